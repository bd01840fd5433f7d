"""Build step of `pip install .`: compile libkeel.so with CMake and ship it inside the keel package, and
compile the extension module keel._keelc (python/keel/_keelc.c, the per-call path).

The CMake build goes to build-pip/ at the repository root (git-ignored, reused by the next install), or
KEEL_CMAKE_BUILD_DIR. KEEL_PREBUILT_LIBRARY=/path/libkeel.so skips CMake and ships that file instead.
At run time KEEL_LIBRARY overrides the shipped copy (python/keel/_lib.py).

The extension needs only keel's headers (include/) and Python's (Python.h: python3-dev on Debian); it does
not link libkeel: keel/_lib.py loads the library and hands the extension its function addresses. For a
development checkout without installing: `python3 setup.py build_ext --inplace` (tests/python does it)."""
import os
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(ROOT, "build-pip"), exist_ok=True)


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        lib = os.environ.get("KEEL_PREBUILT_LIBRARY")
        if not lib:
            bdir = os.environ.get("KEEL_CMAKE_BUILD_DIR") or os.path.join(ROOT, "build-pip")
            jobs = str(os.cpu_count() or 2)
            subprocess.check_call(["cmake", "-S", ROOT, "-B", bdir, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"])
            subprocess.check_call(["cmake", "--build", bdir, "--target", "keel_shared", "-j", jobs])
            lib = os.path.join(bdir, "libkeel.so")
        dest = os.path.join(self.build_lib, "keel")
        os.makedirs(dest, exist_ok=True)
        shutil.copyfile(lib, os.path.join(dest, "libkeel.so"))


keelc = Extension("keel._keelc", sources=["python/keel/_keelc.c"], include_dirs=["include"],
                  extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"])

setup(cmdclass={"build_py": BuildWithLibrary}, ext_modules=[keelc],
      options={"build": {"build_base": os.path.join("build-pip", "setuptools")},
               "egg_info": {"egg_base": "build-pip"}})
