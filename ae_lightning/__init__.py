"""ae-lightning: train, compare and tune autoencoders on MNIST and Fashion-MNIST."""
__version__ = "0.1.0"
