"""The codec's one root exception and what it means for the caller."""


class CodecError(ValueError):
    """The input is not a container this codec can decode, or it is damaged.

    Raised for corrupt, truncated, empty or foreign input and for a decoded
    result whose checksum does not match the original's: `decode` never
    returns wrong bytes silently.
    """
