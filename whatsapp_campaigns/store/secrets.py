"""Credentials encrypted at rest (SPEC §9): WhatsApp access tokens and app secrets are stored
as Fernet tokens (AES-128-CBC + HMAC-SHA256, from `cryptography`) under the key in
`CAMPAIGNS_SECRET_KEY`. Several comma-separated keys rotate: the first encrypts, any decrypts
(`MultiFernet`)."""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretKeyError(Exception):
    """No key, a malformed key, or a key that cannot decrypt what the store holds."""


def generate_secret_key() -> str:
    """A new random key for CAMPAIGNS_SECRET_KEY."""
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts and decrypts the store's credentials with the configured key(s)."""

    def __init__(self, keys: str) -> None:
        parts = [part.strip() for part in keys.split(",") if part.strip()]
        fernets: list[Fernet] = []
        for index, part in enumerate(parts, start=1):
            try:
                fernets.append(Fernet(part.encode()))
            except ValueError as error:
                raise SecretKeyError(
                    f"CAMPAIGNS_SECRET_KEY: key {index} is not a Fernet key (32 url-safe "
                    "base64-encoded bytes); make one with `campaigns accounts secret-key`"
                ) from error
        self._fernet = MultiFernet(fernets) if fernets else None

    @property
    def configured(self) -> bool:
        return self._fernet is not None

    def encrypt(self, plaintext: str) -> str:
        if self._fernet is None:
            raise SecretKeyError(
                "CAMPAIGNS_SECRET_KEY is not set: it encrypts WhatsApp tokens at rest; "
                "make one with `campaigns accounts secret-key` and set it for every process"
            )
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str, *, what: str) -> str:
        """`what` names the secret in the error ("the access token of account acme")."""
        if self._fernet is None:
            raise SecretKeyError(f"CAMPAIGNS_SECRET_KEY is not set: cannot decrypt {what}")
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as error:
            raise SecretKeyError(
                f"CAMPAIGNS_SECRET_KEY cannot decrypt {what}: it is not the key the token "
                "was stored with"
            ) from error
