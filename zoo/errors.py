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
