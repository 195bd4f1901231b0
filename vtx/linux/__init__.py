"""Booting Linux on vtx: the kernel and busybox (:func:`fetch`), an
initramfs (:func:`busybox_initramfs`), the bzImage (:class:`BzImage`) and the
64-bit boot protocol (:func:`load_linux`)."""

from .boot import BootInfo, build_boot_params, e820_map, load_linux
from .bzimage import BzImage, BzImageError
from .fetch import Assets, LinuxAssetsUnavailable, fetch
from .initramfs import INIT_MARKER, Newc, busybox_initramfs

__all__ = ["fetch", "Assets", "LinuxAssetsUnavailable", "BzImage", "BzImageError", "load_linux", "BootInfo",
           "build_boot_params", "e820_map", "busybox_initramfs", "Newc", "INIT_MARKER"]
