"""Shared, vendor-neutral parts of the switch/router ACL drivers (IOS, NX-OS, EOS, Junos): no vendor syntax here."""
