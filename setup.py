"""Everything about the package is in pyproject.toml but its one C file: an
optional accelerator for the libclang walk (reviewer/extract/_walk.c). Without
a C compiler the build goes on without it and the walk stays pure Python."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("reviewer.extract._walk", ["reviewer/extract/_walk.c"],
                             optional=True)])
