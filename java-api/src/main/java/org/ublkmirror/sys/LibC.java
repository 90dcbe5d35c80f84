package org.ublkmirror.sys;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.annotations.In;
import jnr.ffi.annotations.Out;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import jnr.ffi.types.ssize_t;

import java.nio.ByteBuffer;

/**
 * The few libc calls the JDK does not offer: fallocate (hole punching), mount/umount2 and
 * /dev/fuse reads and writes (FUSE frontend), prctl (PR_SET_IO_FLUSHER), ioctl, and the raw
 * syscalls and mappings of {@link IoUring}. Bound once,
 * lazily, through jnr-ffi.
 */
public interface LibC {
    int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CLOEXEC = 0x80000;
    int FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02;
    int PR_SET_IO_FLUSHER = 57;
    /** mount(2) flags. */
    long MS_NOSUID = 2, MS_NODEV = 4;
    /** umount2(2) flags. */
    int MNT_FORCE = 1, MNT_DETACH = 2;
    /** errno values used by callers (Linux, all architectures this runs on). */
    int EPERM = 1, ENOENT = 2, EINTR = 4, EIO = 5, EAGAIN = 11, EBUSY = 16, ENODEV = 19, EINVAL = 22,
            ENOSYS = 38, ECONNABORTED = 103;

    /** mmap(2) protections and flags. */
    int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;
    /** mmap and munmap differ per architecture (through {@link #syscall}: no jnr-ffi pointer dance). */
    long SYS_MMAP = Holder.ARM64 ? 222 : 9, SYS_MUNMAP = Holder.ARM64 ? 215 : 11;

    /** mmap(2): the mapping's address, or -1 with {@link #errno} set. */
    static long mmap(long len, int prot, int flags, int fd, long off) {
        return get().syscall(SYS_MMAP, 0, len, prot, flags, fd, off);
    }

    /** munmap(2): 0, or -1 with {@link #errno} set. */
    static long munmap(long addr, long len) {
        return get().syscall(SYS_MUNMAP, addr, len, 0, 0, 0, 0);
    }

    int open(String path, int flags, int mode);

    int close(int fd);

    int fallocate(int fd, int mode, @off_t long offset, @off_t long len);

    @ssize_t long read(int fd, @Out ByteBuffer buf, @size_t long count);

    @ssize_t long write(int fd, @In ByteBuffer buf, @size_t long count);

    @ssize_t long pread(int fd, @Out ByteBuffer buf, @size_t long count, @off_t long offset);

    @ssize_t long pwrite(int fd, @In ByteBuffer buf, @size_t long count, @off_t long offset);

    int mount(String source, String target, String fstype, long flags, String data);

    int umount2(String target, int flags);

    int prctl(int option, long arg2, long arg3, long arg4, long arg5);

    int ioctl(int fd, long request, Pointer arg);

    int getpid();

    /** syscall(2) with six integer arguments (io_uring_setup and io_uring_enter have no glibc wrapper; IoUring maps its rings through it too). */
    long syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6);

    String strerror(int errnum);

    /** The bound library; loaded on first use. */
    static LibC get() {
        return Holder.LIBC;
    }

    /** errno of the last failed call on this thread. */
    static int errno() {
        return jnr.ffi.LastError.getLastError(jnr.ffi.Runtime.getRuntime(Holder.LIBC));
    }

    final class Holder {
        static final boolean ARM64 = "aarch64".equals(System.getProperty("os.arch"));
        static final LibC LIBC = LibraryLoader.create(LibC.class).load("c");

        private Holder() {
        }
    }
}
