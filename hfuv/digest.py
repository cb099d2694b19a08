"""sha256 of bytes, without hashlib: importing it loads OpenSSL, which costs more than the
replay of a prepared run takes."""


def sha256_hex(data: bytes) -> str:
    try:
        from _sha2 import sha256  # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.10, 3.11
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()
