"""The Linux boot assets: a Debian kernel for virtual machines and a static busybox.

:func:`fetch` downloads two Debian packages with ``apt-get download`` (which
needs no privileges: it writes the .deb into the current directory), unpacks
them with ``dpkg-deb -x`` into a cache directory (of the kernel package only
``boot/`` is kept) and returns their paths in an
:class:`Assets`.  The kernel is the one ``linux-image-cloud-amd64`` depends on
(a metapackage whose one dependency is the versioned image package, e.g.
``linux-image-6.1.0-50-cloud-amd64``): the cloud flavour is built for virtual
machines (few drivers, a serial console).  A manifest in the cache records what
was fetched, so a second call reads it and downloads nothing.

Command line: ``python -m vtx.linux.fetch [--cache DIR]``.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import attrs

from ..errors import VtxError

#: The metapackage that names the current cloud kernel, and busybox.
KERNEL_META = "linux-image-cloud-amd64"
BUSYBOX = "busybox-static"
_MANIFEST = "assets.json"


class LinuxAssetsUnavailable(VtxError):
    """The kernel or busybox could not be had: ``reason`` says why (a tool
    missing, a package not found, a download that failed)."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__(f"Linux boot assets unavailable: {reason}")


@attrs.frozen
class Assets:
    """What :func:`fetch` returns: paths into the cache and the versions."""

    #: The bzImage (``boot/vmlinuz-<release>`` of the image package).
    kernel: pathlib.Path
    #: The kernel's build configuration (``boot/config-<release>``).
    config: pathlib.Path
    #: The statically linked busybox binary.
    busybox: pathlib.Path
    #: The image package's name (``linux-image-6.1.0-50-cloud-amd64``).
    kernel_package: str
    #: Its Debian version (``6.1.176-1``).
    kernel_version: str
    #: The kernel release, as ``uname -r`` prints it (``6.1.0-50-cloud-amd64``).
    kernel_release: str
    #: The busybox-static package's Debian version.
    busybox_version: str
    #: The cache directory.
    cache_dir: pathlib.Path


def default_cache_dir():
    """$VTX_CACHE, else ~/.cache/vtx/linux."""
    env = os.environ.get("VTX_CACHE")
    if env:
        return pathlib.Path(env)
    return pathlib.Path.home() / ".cache" / "vtx" / "linux"


def _run(argv, cwd=None):
    """Run a tool and return its standard output; any failure is
    LinuxAssetsUnavailable with the tool's own words."""
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise LinuxAssetsUnavailable(f"{argv[0]} is not installed (a Debian/Ubuntu host has it)") from None
    except subprocess.TimeoutExpired:
        raise LinuxAssetsUnavailable(f"{' '.join(argv)} did not finish in 900 s") from None
    if p.returncode != 0:
        err = (p.stderr or p.stdout).strip().splitlines()
        tail = err[-1] if err else f"exit status {p.returncode}"
        raise LinuxAssetsUnavailable(f"{' '.join(argv)} failed: {tail}")
    return p.stdout


def resolve_kernel_package(meta=KERNEL_META):
    """The versioned image package the metapackage depends on, from
    ``apt-cache depends`` (lines like ``  Depends: linux-image-6.1.0-50-cloud-amd64``)."""
    out = _run(["apt-cache", "depends", meta])
    for line in out.splitlines():
        key, _, value = line.strip().lstrip("|").partition(":")
        value = value.strip()
        if key == "Depends" and value.startswith("linux-image-") and not value.startswith("<"):
            return value
    raise LinuxAssetsUnavailable(f"apt-cache depends {meta} names no linux-image package "
                                 f"(is the package list up to date? apt-get update)")


def _download(package, into):
    """apt-get download into the directory `into`; returns the .deb's path."""
    before = set(into.glob("*.deb"))
    _run(["apt-get", "download", "-q", package], cwd=into)
    new = [p for p in into.glob("*.deb") if p not in before and p.name.startswith(package + "_")]
    if len(new) != 1:
        raise LinuxAssetsUnavailable(f"apt-get download {package} left no .deb in {into}")
    return new[0]


def _deb_version(deb):
    return _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def _from_manifest(cache):
    """The Assets recorded in the cache, or None when the manifest is
    missing, unreadable, or names a file that is gone."""
    try:
        m = json.loads((cache / _MANIFEST).read_text())
        assets = Assets(kernel=cache / m["kernel"], config=cache / m["config"], busybox=cache / m["busybox"],
                        kernel_package=m["kernel_package"], kernel_version=m["kernel_version"],
                        kernel_release=m["kernel_release"], busybox_version=m["busybox_version"],
                        cache_dir=cache)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if all(p.is_file() for p in (assets.kernel, assets.config, assets.busybox)):
        return assets
    return None


def fetch(cache_dir=None):
    """Download (once) and unpack the kernel and busybox; return :class:`Assets`.

    ``cache_dir`` defaults to :func:`default_cache_dir`.  Raises
    :class:`LinuxAssetsUnavailable` when apt-get or dpkg-deb is missing or a
    download fails."""
    cache = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found = _from_manifest(cache)
    if found is not None:
        return found
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise LinuxAssetsUnavailable(f"{tool} is not installed (a Debian/Ubuntu host has it)")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LinuxAssetsUnavailable(f"cannot make the cache directory {cache}: {e.strerror}") from None
    kpkg = resolve_kernel_package()
    # Download into a fresh directory so that a half-finished earlier attempt
    # (or another process) does not confuse which .deb is which.
    with tempfile.TemporaryDirectory(dir=cache, prefix="download-") as tmp:
        tmp = pathlib.Path(tmp)
        kdeb = _download(kpkg, tmp)
        bdeb = _download(BUSYBOX, tmp)
        kversion, bversion = _deb_version(kdeb), _deb_version(bdeb)
        kroot, broot = cache / kpkg, cache / BUSYBOX
        for deb, root in ((kdeb, kroot), (bdeb, broot)):
            # Unpack beside the cache's copy and swap it in whole, so that a
            # reader never sees a half-unpacked tree.
            staged = tmp / ("unpacked-" + root.name)
            staged.mkdir()
            _run(["dpkg-deb", "-x", str(deb), str(staged)])
            if root is kroot:
                # The image package also carries ~100 MB of modules; the
                # initramfs of this package loads none, so only boot/ is kept.
                for extra in staged.iterdir():
                    if extra.name != "boot":
                        shutil.rmtree(extra, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
            try:
                os.rename(staged, root)
            except OSError:
                if not root.is_dir():        # else another fetch put it there first
                    raise LinuxAssetsUnavailable(f"cannot move the unpacked {root.name} into {cache}") from None
    images = sorted((kroot / "boot").glob("vmlinuz-*"))
    if len(images) != 1:
        raise LinuxAssetsUnavailable(f"{kpkg} holds {len(images)} boot/vmlinuz-* files, not one")
    release = images[0].name[len("vmlinuz-"):]
    config = kroot / "boot" / f"config-{release}"
    busybox = next((p for p in (broot / "bin" / "busybox", broot / "usr" / "bin" / "busybox") if p.is_file()), None)
    if busybox is None or not config.is_file():
        raise LinuxAssetsUnavailable(f"the packages lack {'bin/busybox' if busybox is None else config.name}")
    rel = lambda p: str(p.relative_to(cache))
    manifest = {"kernel": rel(images[0]), "config": rel(config), "busybox": rel(busybox),
                "kernel_package": kpkg, "kernel_version": kversion, "kernel_release": release,
                "busybox_version": bversion}
    tmpm = cache / (_MANIFEST + ".tmp")
    tmpm.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmpm, cache / _MANIFEST)
    return _from_manifest(cache)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m vtx.linux.fetch",
                                 description="Download and unpack the Debian cloud kernel and busybox-static.")
    ap.add_argument("--cache", metavar="DIR", help="cache directory (default: $VTX_CACHE or ~/.cache/vtx/linux)")
    args = ap.parse_args(argv)
    try:
        a = fetch(args.cache)
    except LinuxAssetsUnavailable as e:
        print(e, file=sys.stderr)
        return 1
    print(f"kernel   {a.kernel}  ({a.kernel_package} {a.kernel_version}, release {a.kernel_release})")
    print(f"config   {a.config}")
    print(f"busybox  {a.busybox}  (busybox-static {a.busybox_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
