"""Datasets as uint8 tensors, converted to float one batch at a time.

One module per dataset family, and ``registry`` to find them by name:

- ``dataset``: ``ImageDataset``, ``batches``, splits and subsets (what every dataset is).
- ``loaders``: ``image_batches``: a user's torch ``Dataset`` or ``DataLoader`` read in batches.
- ``mnist`` (the embedded MNIST-5k, IDX files), ``svhn``, ``strips`` (MNIST-strips),
  ``celeba``, ``cifar10`` (its binary version), ``images`` (image files and folders; the one image decoder), ``memmap``.
- ``download``: resumable, checksummed downloads.
- ``registry``: ``load_dataset("mnist-strips")``, ``default_arch``, ``DATASETS``.
"""

from perceptreg.core.lazy import lazy_exports

# imported on first use (core/lazy.py): `import perceptreg.data` stays free of torch
__getattr__, __dir__ = lazy_exports(__name__, {
    "perceptreg.data.celeba": ("dcgan_crop", "load_celeba", "read_celeba_attributes", "split_by_identity"),
    "perceptreg.data.cifar10": ("CIFAR10_URL", "load_cifar10"),
    "perceptreg.data.dataset": ("DIGITS", "RELEASE_EVERY", "ImageDataset", "batches", "evaluation_subset",
        "global_batch_sizes", "spread_over_classes", "stratified_split", "to_float", "training_subset"),
    "perceptreg.data.download": ("digest_of",),  # download(): perceptreg.data.download.download, its module's name
    "perceptreg.data.images": ("ImageDecodeError", "ImageTooLargeError", "decode_image", "image_folder_shape",
        "load_image_files", "load_image_folder"),
    "perceptreg.data.loaders": ("ImageBatches", "as_image_dataset", "image_batches"),
    "perceptreg.data.memmap": ("load_memmap", "memmap_meta", "write_memmap"),
    "perceptreg.data.mnist": ("MNIST_FILES", "download_mnist", "load_idx_pair", "load_mnist", "load_mnist5k",
        "mnist5k_split", "read_idx", "write_idx"),
    "perceptreg.data.registry": ("DATASETS", "attack_eps", "default_arch", "image_shape_for", "load_dataset", "training_defaults"),
    "perceptreg.data.strips": ("PALETTE", "STRIP_SHIFT", "make_mnist_strips", "mnist_strips_split"),
    "perceptreg.data.svhn": ("SVHN_FILES", "load_svhn", "read_svhn_mat"),
})

__all__ = [
    "CIFAR10_URL", "DATASETS", "DIGITS", "MNIST_FILES", "PALETTE", "RELEASE_EVERY", "STRIP_SHIFT", "SVHN_FILES",
    "ImageBatches", "ImageDataset", "ImageDecodeError", "as_image_dataset", "attack_eps", "image_batches", "ImageTooLargeError", "batches", "dcgan_crop", "decode_image", "default_arch", "digest_of", "evaluation_subset",
    "download_mnist", "global_batch_sizes", "image_folder_shape", "image_shape_for", "load_celeba", "split_by_identity", "load_cifar10", "load_dataset",
    "load_idx_pair", "load_image_files", "load_image_folder", "load_memmap", "load_mnist", "load_mnist5k",
    "load_svhn", "make_mnist_strips", "memmap_meta", "mnist5k_split", "mnist_strips_split", "read_celeba_attributes",
    "read_idx", "read_svhn_mat", "spread_over_classes", "stratified_split", "to_float", "training_defaults", "training_subset", "write_idx", "write_memmap",
]
