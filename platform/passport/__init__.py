"""Vaccine passports: EU DCC certificates signed centrally with a PKCS#11 key (see README.md)."""
