"""Native PyTorch IDA-VLM (ID-aware Qwen-VL): load the published checkpoints, encode images with
explicit roles, score and generate answers in batches, parse grounding boxes."""
from .errors import IdaVlmError
from .generation import Generation
from .grounding import Box, parse_boxes
from .loading import HUB_REPO
from .model import IdaVlm
from .prompt import build_id_query, grounding_query
from .request import MAX_IMAGES, ROLES, EncodedImage, ImageLike, Request, RoleImage

__all__ = ["IdaVlm", "Request", "RoleImage", "EncodedImage", "ImageLike", "Generation", "IdaVlmError", "Box",
           "parse_boxes", "build_id_query", "grounding_query", "HUB_REPO", "MAX_IMAGES", "ROLES"]
