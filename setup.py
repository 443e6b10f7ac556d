from setuptools import find_packages, setup

setup(
    name="pancreas_seg",
    version="0.1.0",
    description="Pancreas segmentation in CT and MRI: PNet-MSA, bidirectional ConvLSTM and Jaccard loss (Cai et al. 2018)",
    packages=find_packages(include=["pancreas_seg", "pancreas_seg.*"]),
    package_data={"pancreas_seg": ["resources/*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow-cpu>=2.16; platform_machine=='x86_64'",
        "tensorflow>=2.16; platform_machine!='x86_64'",
        "keras>=3.3",
        "tensorboard>=2.16",
        "tensorpack>=0.11",
        "numpy>=1.24",
        "scipy>=1.10",
        "pydicom>=3.0",
        "pylibjpeg>=2.0",
        "pylibjpeg-libjpeg>=2.1",  # JPEG baseline, extended, lossless (process 14), JPEG-LS
        "pylibjpeg-openjpeg>=2.0",  # JPEG 2000, HTJ2K
        "nibabel>=5.0",
        "scikit-image>=0.22",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "highdicom>=0.23",
        "openvino>=2024.0",  # the CPU runtime of the CNN at prediction (about 60 MB; --runtime keras without it)
    ],
    extras_require={
        # CPU JAX: the JAX-only paths (KERAS_BACKEND=jax) and multi-worker training are tested too
        "test": ["pytest>=7", "jax>=0.4.30"],
        # TensorFlow with its CUDA libraries (Linux x86_64); it overlaps the tensorflow-cpu above: see docs/PERFORMANCE.md
        "gpu": ["tensorflow[and-cuda]>=2.16; sys_platform=='linux' and platform_machine=='x86_64'"],
        # JAX on NVIDIA GPUs with pip's CUDA 12 wheels (Linux x86_64), plain JAX elsewhere; run with KERAS_BACKEND=jax
        "jax": ["jax[cuda12]>=0.4.30; sys_platform=='linux' and platform_machine=='x86_64'",
                "jax>=0.4.30; sys_platform!='linux' or platform_machine!='x86_64'"],
    },
    entry_points={"console_scripts": ["pancreas-seg=pancreas_seg.cli:main"]},
)
