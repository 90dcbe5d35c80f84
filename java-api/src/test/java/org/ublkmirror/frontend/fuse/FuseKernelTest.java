package org.ublkmirror.frontend.fuse;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.ublkmirror.frontend.fuse.FuseKernel.*;

/** Pins the structure layouts of linux/fuse.h 7.38 that FuseServer writes and reads. */
class FuseKernelTest {

    @Test
    void headers() {
        assertEquals(40, IN_HEADER_SIZE);   // sizeof(struct fuse_in_header)
        assertEquals(16, OUT_HEADER_SIZE);  // sizeof(struct fuse_out_header)
        assertEquals(40, WRITE_IN_SIZE);    // sizeof(struct fuse_write_in)
    }

    @Test
    void replyStructures() {
        assertEquals(88, ATTR_STRUCT_SIZE);
        assertEquals(ATTR_FLAGS + 4, ATTR_STRUCT_SIZE);
        // fuse_entry_out: 4 x u64, 2 x u32, then fuse_attr
        assertEquals(OUT_HEADER_SIZE + 40, ENTRY_ATTR);
        assertEquals(128, ENTRY_OUT_SIZE);
        assertEquals(ENTRY_ATTR + ATTR_STRUCT_SIZE, OUT_HEADER_SIZE + ENTRY_OUT_SIZE);
        // fuse_attr_out: u64, u32, u32, then fuse_attr
        assertEquals(ATTR_OUT_ATTR + ATTR_STRUCT_SIZE, OUT_HEADER_SIZE + ATTR_OUT_SIZE);
        assertEquals(104, ATTR_OUT_SIZE);
        // fuse_init_out: 64 bytes, flags2 at 32
        assertEquals(64, INIT_OUT_SIZE);
        assertEquals(OUT_HEADER_SIZE + 32, INIT_OUT_FLAGS2);
        assertEquals(OUT_HEADER_SIZE + 28, INIT_OUT_MAX_PAGES);
        // fuse_kstatfs: 5 x u64, 4 x u32, 6 spare u32
        assertEquals(80, STATFS_OUT_SIZE);
        assertEquals(OUT_HEADER_SIZE + 48, STATFS_FRSIZE);
        assertEquals(16, OPEN_OUT_SIZE);
        assertEquals(8, WRITE_OUT_SIZE);
        assertEquals(24, DIRENT_NAME);
    }

    @Test
    void requestStructures() {
        // fuse_read_in / fuse_write_in: fh u64, offset u64, size u32, flags u32, lock_owner u64, flags u32, pad u32
        assertEquals(IN_HEADER_SIZE + 8, RW_IN_OFFSET);
        assertEquals(IN_HEADER_SIZE + 16, RW_IN_SIZE);
        assertEquals(IN_HEADER_SIZE + 32, RW_IN_FLAGS);
        // fuse_setattr_in: valid u32, pad u32, fh u64, size u64
        assertEquals(IN_HEADER_SIZE + 16, SETATTR_IN_SIZE);
        // fuse_fallocate_in: fh, offset, length (u64), mode u32
        assertEquals(IN_HEADER_SIZE + 24, FALLOC_IN_MODE);
    }

    @Test
    void flags() {
        // The INIT flags FuseServer asks for, as logged by FuseServe ("flags 0x448021").
        assertEquals(0x448021, ASYNC_READ | BIG_WRITES | ASYNC_DIO | PARALLEL_DIROPS | MAX_PAGES);
    }
}
