"""``zoo serve``: a page and REST API that run several inpainting models side by side on one image and mask.

    from zoo.serve import create_app, load_served_models
    app = create_app(load_served_models(["deepfill_v2,tiny", "mat,tiny"]))   # any ASGI server runs it

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart).
"""

from zoo.serve.app import create_app
from zoo.serve.inputs import Limits
from zoo.serve.models import load_served_models, parse_model_spec

__all__ = ["Limits", "create_app", "load_served_models", "parse_model_spec"]
