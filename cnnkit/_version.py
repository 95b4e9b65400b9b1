"""The package version, at the bottom layer so that any module can name it without importing cnnkit."""
__version__ = "0.1.0"
