"""Test doubles for gear the project cannot ship: never used on the production path."""
