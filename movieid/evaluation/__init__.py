"""Evaluation of ID-aware models: MM-ID (``movieid eval mmid``)."""
from .mmid import Benchmark, Item, Report, answer_benchmark, load_benchmark, read_predictions, score

__all__ = ["Benchmark", "Item", "Report", "answer_benchmark", "load_benchmark", "read_predictions", "score",
           "model_answerer"]


def model_answerer(model, max_new_tokens: int):
    """``answer_batch`` for ``answer_benchmark`` from an ``IdaVlm``: greedy answers to the items'
    questions as they are, each image's role read from the text ("<name> is <img>" -> ID image)."""
    from ..models.ida_vlm import Request, RoleImage
    from ..models.ida_vlm.training import image_roles

    def answer_batch(pairs):
        requests = [Request(item.question, tuple(RoleImage(image, role) for image, role in
                                                 zip(images, image_roles(item.question))))
                    for item, images in pairs]
        return [answer.text for answer in model.generate(requests, max_new_tokens=max_new_tokens)]
    return answer_batch
