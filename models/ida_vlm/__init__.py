"""Native PyTorch IDA-VLM (ID-aware Qwen-VL): load the published checkpoints, encode images with
explicit roles, score and generate answers in batches, parse grounding boxes."""
from .generation import Generation
from .grounding import Box, parse_boxes
from .loading import HUB_REPO
from .model import MAX_IMAGES, ROLES, EncodedImage, IdaVlm, ImageLike, Request
from .prompt import build_id_query, grounding_query

__all__ = ["IdaVlm", "EncodedImage", "Generation", "Box", "ImageLike", "Request", "parse_boxes", "build_id_query",
           "grounding_query", "HUB_REPO", "MAX_IMAGES", "ROLES"]
