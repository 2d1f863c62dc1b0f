"""Builds fastgru's one extension: the C core (src_c/) and its Cython binding (fastgru/_core.pyx).

No flag here targets the build machine: kernels_avx2.c selects AVX2+FMA by pragma for its own functions
and the core picks it at run time only on CPUs that have it.
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# -fno-trapping-math changes no result (IEEE semantics stay); it lets the compiler evaluate both sides
# of a select, so the gate loops with their branch-free tanh vectorise. -ffp-contract=off keeps a * b + c
# two roundings on every ISA (GCC's default under -std=c11, not clang's): the AVX2 build, which may use
# FMA, then computes the gate math exactly as the portable build, and int8 models give bitwise equal
# results on both (docs/int8.md).
compile_args = ["-O3", "-std=c11", "-fno-strict-aliasing", "-fno-trapping-math", "-ffp-contract=off",
                "-D_POSIX_C_SOURCE=200809L"]
link_args = ["-pthread"]
if os.environ.get("FASTGRU_SANITIZE"):
    # tools/sanitize.sh: AddressSanitizer + UndefinedBehaviorSanitizer build of the whole extension.
    compile_args += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                     "-fno-sanitize-recover=undefined"]
    link_args += ["-fsanitize=address,undefined"]

core = Extension(
    "fastgru._core",
    sources=["fastgru/_core.pyx"] + sorted(glob("src_c/*.c")),
    include_dirs=["src_c", numpy.get_include()],
    depends=sorted(glob("src_c/*.h")),  # the *_impl.h templates: editing one must rebuild its .c
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    # exp, tanh, nearbyintf: without libm as a declared dependency they resolve only because the
    # interpreter happens to load it, and auditwheel cannot see the glibc versions they need
    libraries=["m"] if sys.platform != "win32" else [],
    extra_compile_args=compile_args if sys.platform != "win32" else [],
    extra_link_args=link_args if sys.platform != "win32" else [],
)


class ParallelBuildExt(build_ext):
    """Compiles the extension's C files one per core. setuptools compiles one extension's sources one after
    another, and fastgru is one extension of 20 files whose AVX-512 kernel files take most of the time:
    every install, the sanitizer build and the release check wait for it. Only for the Unix compiler,
    whose compile() is this loop over _compile() done in order."""

    def build_extension(self, ext):
        compiler = self.compiler
        if compiler.compiler_type == "unix" and (os.cpu_count() or 1) > 1:
            compiler.compile = _parallel_compile.__get__(compiler)
        super().build_extension(ext)


def _parallel_compile(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                      extra_preargs=None, extra_postargs=None, depends=None):
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def compile_one(obj):
        if obj in build:
            source, extension = build[obj]
            self._compile(obj, source, extension, cc_args, extra_postargs, pp_opts)

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(compile_one, objects))  # list(): a compiler error is raised here
    return objects


setup(ext_modules=cythonize([core], language_level=3), cmdclass={"build_ext": ParallelBuildExt})
