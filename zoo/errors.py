"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class ZooError(Exception):
    """Bad input from the user (path, image, mask, checkpoint, model name, config)."""


class InputSizeError(ZooError, ValueError):
    """An image or mask whose size the generator cannot take."""


class MaskError(ZooError, ValueError):
    """A mask that is not binary, has the wrong shape, or the wrong polarity."""


class CheckpointError(ZooError):
    """A checkpoint that cannot be read or does not fit the model."""


class WeightsNotFoundError(ZooError, FileNotFoundError):
    """Pretrained feature-extractor weights that are not on this machine."""


class DownloadError(ZooError):
    """A weight file that could not be fetched or did not match its published size or hash."""


class WeightsMissingError(ZooError, FileNotFoundError):
    """Released model weights that are not on this machine and may not be downloaded (offline)."""


class UnknownNameError(ZooError, KeyError):
    """A name that no registry entry has (model, discriminator, mask generator, tracker, ...)."""

    def __init__(self, kind: str, name, known):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(name)

    def __str__(self):
        return f"unknown {self.kind} {self.name!r}; known: {', '.join(self.known)}"


class DuplicateNameError(ZooError, ValueError):
    """A registry name registered twice (a programming error, reported the same way by every registry)."""


class DiskFullError(ZooError, OSError):
    """No space left to write a checkpoint or a run file."""


def register_name(table: dict, kind: str, name: str, value) -> None:
    """Add ``name`` to a registry ``table``; every registry refuses duplicates the same way."""
    if name in table:
        raise DuplicateNameError(f"{kind} {name!r} is registered twice")
    table[name] = value


def lookup_name(table: dict, kind: str, name):
    """``table[name]``, or ``UnknownNameError`` listing the known names."""
    try:
        return table[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name from a config file, e.g. a list
        raise UnknownNameError(kind, name, table) from None


class TrainingStopped(Exception):
    """Training stopped by SIGTERM / SIGINT after saving a checkpoint of the last step.

    The CLI prints the message (where the checkpoint is) and exits with ``128 + signal`` (143 / 130).
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class TrainingAborted(BaseException):
    """A second stop signal: abandon at once (a BaseException, so no ``except Exception`` swallows it).

    The save in progress is abandoned without touching the previous checkpoint.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
