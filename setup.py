"""Maps the top-level layer folders into the one import package `computewatch`.

The layout keeps `collectors/`, `pipelines/`, `alerts/`, `dashboards/` and `reports/` at the top
of the repository (the project's card fixes them there), but a wheel installs exactly one
top-level package: `computewatch.collectors`, `computewatch.pipelines`, ... Generic top-level
names would collide with other distributions in users' environments. Everything else is
declared in pyproject.toml; this file only computes the package list, so a new subpackage is
never forgotten.
"""

from setuptools import find_packages, setup

LAYERS = ("collectors", "pipelines", "alerts", "dashboards", "reports")

packages = find_packages(include=["computewatch", "computewatch.*"])
package_dir = {"computewatch": "computewatch"}
for layer in LAYERS:
    packages += [f"computewatch.{name}" for name in find_packages(include=[layer, f"{layer}.*"])]
    package_dir[f"computewatch.{layer}"] = layer

setup(packages=packages, package_dir=package_dir)
