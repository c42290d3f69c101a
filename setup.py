"""hf_seqgan: training and decoding of pretrained seq2seq models beyond teacher forcing."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


class BuildPyWithModelCards(build_py):
    """Ship the top-level model_cards/ templates inside the package (hf_seqgan/model_cards/) in wheels;
    an editable install reads them from the checkout."""

    def run(self):
        super().run()
        if not self.editable_mode:
            self.copy_tree(str(HERE / "model_cards"), str(Path(self.build_lib) / "hf_seqgan" / "model_cards"))


setup(
    name="hf_seqgan",
    version="0.1.0.dev0",
    description=(
        "Scheduled sampling, professor forcing, adversarial (SeqGAN / Gumbel) training and "
        "discriminator-guided decoding for any Hugging Face seq2seq model"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["hf_seqgan", "hf_seqgan.*"]),
    include_package_data=True,
    package_data={"hf_seqgan": ["metrics/*/*.py", "py.typed"]},
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "tokenizers>=0.21",
        "datasets>=3.0",
        "evaluate>=0.4.3",
        "peft>=0.17",
        "accelerate>=1.4",
        "huggingface-hub>=1.0",
        "numpy",
        "jinja2",
    ],
    extras_require={
        "dev": ["pytest>=8", "scipy", "rouge_score", "sacrebleu>=2", "nltk", "absl-py", "matplotlib", "jinja2"],
        "examples": ["rouge_score", "sacrebleu>=2", "nltk", "absl-py", "matplotlib", "jinja2"],
    },
    cmdclass={"build_py": BuildPyWithModelCards},
    entry_points={"console_scripts": ["hf-seqgan = hf_seqgan.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "License :: OSI Approved :: Apache Software License",
    ],
)
