"""An initramfs: the cpio "newc" archive the kernel unpacks into its rootfs.

The format (the kernel's early-userspace buffer format, and cpio's "new ASCII"
format) is a series of members, each a 110-byte header of ASCII, the
NUL-terminated name, the data, and padding:

====================  ========  ==========================================
field                 size      value
====================  ========  ==========================================
c_magic               6         ``070701``
c_ino ... c_check     13 x 8    hexadecimal numbers, in this order:
                                ino, mode, uid, gid, nlink, mtime,
                                filesize, devmajor, devminor, rdevmajor,
                                rdevminor, namesize (with the NUL), check
====================  ========  ==========================================

The name is padded so that header plus name is a multiple of 4 bytes; the
data (a file's contents, a symbolic link's target) is padded to a multiple of
4 too.  A member named ``TRAILER!!!`` ends the archive.  ``check`` is 0 (it is
for the "070702" variant only).  The kernel accepts the archive compressed with
any compressor it was built with; gzip (CONFIG_RD_GZIP) is in every Debian
kernel.
"""

import gzip
import os
import pathlib
import stat

from ..errors import ArgumentError

MAGIC = b"070701"
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"

#: What /init prints once it has mounted /proc, /sys and /dev: a host (a test)
#: waits for this line on the serial console.
INIT_MARKER = "vtx-initramfs: init running"

#: The busybox applets /bin gets as symbolic links (the init script also runs
#: ``busybox --install -s``, which adds the rest once /proc is mounted).
APPLETS = ("sh", "ash", "mount", "umount", "uname", "cat", "head", "tail", "echo", "ls", "mkdir", "rm", "cp",
           "mv", "ln", "dmesg", "ps", "free", "uptime", "sleep", "true", "false", "test", "[", "grep", "wc",
           "setsid", "cttyhack", "stty", "poweroff", "reboot", "halt", "sync", "date", "hexdump", "printf",
           "env", "id", "pwd", "mknod", "chmod", "sed", "dd", "vi", "top", "kill")


def _pad4(n):
    return -n % 4


class Newc:
    """A writer of a cpio "newc" archive.  Add members in order (a directory
    before what it holds: the kernel creates each member as it reads it), then
    :meth:`bytes` or :meth:`gzip`, which append the trailer.

    Names are relative to the root (a leading ``/`` is dropped, as the kernel
    expects: ``dev/console``); modes are the permission bits (the file type
    comes from the method)."""

    def __init__(self, mtime=0):
        self._parts = []
        self._ino = 0
        self._names = set()
        self._mtime = mtime
        self._closed = False

    @staticmethod
    def _name(path):
        if not isinstance(path, str):
            raise TypeError(f"a member name is a str, not {type(path).__name__}")
        name = path.strip("/")
        if not name or "\0" in name or any(c in ("", ".", "..") for c in name.split("/")):
            raise ArgumentError(f"bad member name {path!r}: a path of non-empty components other than . and ..")
        return name

    @staticmethod
    def _perm(mode):
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise ArgumentError(f"mode is the permission bits 0 to 0o7777, not {mode!r}")
        return mode

    def _member(self, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        if self._closed:
            raise ArgumentError("the archive is finished (its trailer is written); start a new Newc")
        if name != TRAILER:
            if name in self._names:
                raise ArgumentError(f"the archive has a member {name!r} already")
            self._names.add(name)
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino if name != TRAILER else 0, mode, 0, 0, nlink, self._mtime, len(data),
                  0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = MAGIC + b"".join(b"%08X" % f for f in fields)
        assert len(header) == HEADER_SIZE
        self._parts += [header, encoded, b"\0" * _pad4(HEADER_SIZE + len(encoded)),
                        data, b"\0" * _pad4(len(data))]

    def directory(self, path, mode=0o755):
        self._member(self._name(path), stat.S_IFDIR | self._perm(mode), nlink=2)

    def file(self, path, data, mode=0o644):
        if isinstance(data, str):
            data = data.encode()
        self._member(self._name(path), stat.S_IFREG | self._perm(mode), bytes(data))

    def symlink(self, path, target):
        if not isinstance(target, str) or not target or "\0" in target:
            raise ArgumentError(f"a symbolic link's target is a non-empty str, not {target!r}")
        self._member(self._name(path), stat.S_IFLNK | 0o777, target.encode())

    def device(self, path, kind, major, minor, mode=0o600):
        """A device node: ``kind`` "c" (character) or "b" (block)."""
        types = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}
        if kind not in types:
            raise ArgumentError(f"a device node is 'c' (character) or 'b' (block), not {kind!r}")
        for what, n in (("major", major), ("minor", minor)):
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 0xFFFFFFFF:
                raise ArgumentError(f"device {what} is an int 0 to 0xFFFFFFFF, not {n!r}")
        self._member(self._name(path), types[kind] | self._perm(mode), rdev=(major, minor))

    def bytes(self):
        """The archive, uncompressed, with its trailer (the archive is then finished)."""
        if not self._closed:
            self._member(TRAILER, 0, nlink=1)
            self._closed = True
        return b"".join(self._parts)

    def gzip(self):
        """The archive compressed with gzip (mtime 0 in the gzip header, so the
        same members give the same bytes)."""
        return gzip.compress(self.bytes(), compresslevel=6, mtime=0)


DEFAULT_INIT = f"""#!/bin/busybox sh
# /init of the vtx initramfs: the kernel runs it as process 1.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
echo "{INIT_MARKER}"
export HOME=/root PS1='~ # '
cd /root
# setsid: a new session; cttyhack: open the console's real tty (ttyS0) so the
# shell has a controlling terminal (job control, Ctrl-C).
exec setsid cttyhack sh
"""


def busybox_initramfs(busybox_path, init_script=None):
    """A gzip-compressed initramfs: /bin/busybox (from ``busybox_path``, a
    statically linked busybox) with symbolic links for :data:`APPLETS`, the
    device nodes a console needs, and ``/init`` (``init_script``, by default
    :data:`DEFAULT_INIT`: mount proc, sysfs and devtmpfs, print
    :data:`INIT_MARKER`, and run a shell with the prompt ``"~ # "`` on the
    console)."""
    try:
        busybox = pathlib.Path(os.fspath(busybox_path)).read_bytes()
    except TypeError:
        raise TypeError(f"busybox_path is a path, not {type(busybox_path).__name__}") from None
    except OSError as e:
        raise ArgumentError(f"cannot read busybox at {busybox_path}: {e.strerror}") from None
    if busybox[:4] != b"\x7fELF":
        raise ArgumentError(f"{busybox_path} is not an ELF executable")
    script = DEFAULT_INIT if init_script is None else init_script
    if isinstance(script, str):
        script = script.encode()
    if not isinstance(script, (bytes, bytearray)) or not script.startswith(b"#!"):
        raise ArgumentError("init_script is the text of a script that starts with #! (e.g. #!/bin/busybox sh)")
    a = Newc()
    for d in ("bin", "sbin", "dev", "etc", "proc", "sys", "root", "tmp", "usr", "usr/bin", "usr/sbin"):
        a.directory(d, 0o1777 if d == "tmp" else (0o700 if d == "root" else 0o755))
    # The nodes /init may need before devtmpfs is mounted: /dev/console, which
    # the kernel opens for init's standard streams (Documentation/admin-guide/
    # devices.txt: 5,1), the first serial port (4,64), /dev/null (1,3) and
    # /dev/kmsg (1,11), whose lines the kernel prints on its console.
    a.device("dev/console", "c", 5, 1, 0o600)
    a.device("dev/ttyS0", "c", 4, 64, 0o660)
    a.device("dev/null", "c", 1, 3, 0o666)
    a.device("dev/kmsg", "c", 1, 11, 0o644)
    a.file("bin/busybox", busybox, 0o755)
    for name in APPLETS:
        a.symlink(f"bin/{name}", "busybox")
    a.file("init", bytes(script), 0o755)
    return a.gzip()
