"""Packaging that pyproject.toml cannot say: the top-level layouts/ ships as publisher.layouts.

Every other setting is in pyproject.toml. The built-in layouts are stored once, in layouts/
(where this repo's sample newsletter uses them too), and installed inside the package so an
editable and a wheel install both find them with importlib.resources.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["publisher*"]), "publisher.layouts"],
    package_dir={"publisher.layouts": "layouts"},
)
