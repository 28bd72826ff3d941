#!/usr/bin/env python3
"""Derives ASP.NET Identity password-hash vectors from the published format,
independently of the Go code (Python's hashlib PBKDF2). See README.md."""
import base64, hashlib, json, struct

PRF = {0: "sha1", 1: "sha256", 2: "sha512"}

def v2(password, salt):
    sub = hashlib.pbkdf2_hmac("sha1", password.encode("utf-8"), salt, 1000, 32)
    return base64.b64encode(b"\x00" + salt + sub).decode()

def v3(password, salt, prf, iterations, subkey_len):
    sub = hashlib.pbkdf2_hmac(PRF[prf], password.encode("utf-8"), salt, iterations, subkey_len)
    header = b"\x01" + struct.pack(">III", prf, iterations, len(salt))
    return base64.b64encode(header + salt + sub).decode()

seq16 = bytes(range(16))
fixed = b"0123456789abcdef"
out = [
    {"password": "my password", "hash": v2("my password", seq16), "format": "v2"},
    {"password": "my password", "hash": v3("my password", seq16, 2, 100000, 32), "format": "v3-sha512-100000"},
    {"password": "my password", "hash": v3("my password", seq16, 1, 10000, 32), "format": "v3-sha256-10000"},
    {"password": "pässwörd ✓ 密码", "hash": v2("pässwörd ✓ 密码", fixed), "format": "v2"},
    {"password": "pässwörd ✓ 密码", "hash": v3("pässwörd ✓ 密码", fixed, 0, 5000, 20), "format": "v3-sha1-5000-20"},
    {"password": "Correct Horse 9!", "hash": v3("Correct Horse 9!", fixed * 2, 2, 1234, 64), "format": "v3-sha512-1234-salt32-64"},
    {"password": "", "hash": v2("", seq16), "format": "v2"},
]
print(json.dumps(out, ensure_ascii=False, indent=1))
