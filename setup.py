"""Package discovery for setuptools, which pyproject.toml alone cannot express here: the repository root is the
package ``carrara`` (it is also the Blender extension root), so each package found under addon/, backend/ and
shared/ ships as ``carrara.<name>``; a new subpackage ships without anyone listing it."""
from setuptools import find_packages, setup

SHIPPED = ["addon", "addon.*", "backend", "backend.*", "shared", "shared.*"]

setup(packages=["carrara", *(f"carrara.{name}" for name in find_packages(include=SHIPPED))])
