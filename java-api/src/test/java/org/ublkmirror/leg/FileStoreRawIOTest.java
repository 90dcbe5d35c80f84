package org.ublkmirror.leg;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * FileStore's own descriptors (direct buffers) and its channels (heap buffers) see the same bytes; a
 * closed store writes nowhere. The own descriptors are used only with -Dublkmirror.rawio=true (off by
 * default; run this class with it to cover them, `mvn test -Dublkmirror.rawio=true`); {@link RawIOTest}
 * calls their I/O directly in every run.
 */
class FileStoreRawIOTest {

    @Test
    void directAndHeapBuffersAgreeAndFuaWritesLand(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("leg.img");
        Random rnd = new Random(7);
        try (FileStore s = FileStore.createSparse(f, 1 << 20)) {
            byte[] a = new byte[8192], b = new byte[4096];
            rnd.nextBytes(a);
            rnd.nextBytes(b);
            ByteBuffer da = ByteBuffer.allocateDirect(a.length).put(a).flip();
            s.write(4096, da, false);
            assertEquals(0, da.remaining(), "direct source consumed");
            ByteBuffer db = ByteBuffer.allocateDirect(b.length + 100).position(100);
            db.put(b).position(100); // a buffer whose data does not start at 0
            s.write(65536, db, true);
            ByteBuffer heap = ByteBuffer.allocate(a.length);
            s.read(4096, heap);
            assertArrayEquals(a, heap.array(), "heap read of a direct write");
            ByteBuffer back = ByteBuffer.allocateDirect(b.length + 8).position(8);
            s.read(65536, back);
            byte[] got = new byte[b.length];
            back.position(8).get(got);
            assertArrayEquals(b, got, "direct read at a non-zero position");
            s.write(0, ByteBuffer.wrap(b), false);
            ByteBuffer d0 = ByteBuffer.allocateDirect(b.length);
            s.read(0, d0);
            d0.flip().get(got);
            assertArrayEquals(b, got, "direct read of a heap write");
            s.flush();
        }
        byte[] disk = Files.readAllBytes(f);
        assertEquals(1 << 20, disk.length);
    }

    @Test
    void aClosedStoreRefusesWritesEvenWhenItsDescriptorNumbersAreReused(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("leg.img"), other = dir.resolve("other.img");
        FileStore s = FileStore.createSparse(f, 1 << 16);
        s.close();
        try (FileStore o = FileStore.createSparse(other, 1 << 16)) { // may get the freed numbers
            ByteBuffer x = ByteBuffer.allocateDirect(4096);
            while (x.hasRemaining()) x.put((byte) 0x5a);
            x.flip();
            assertThrows(ClosedChannelException.class, () -> s.write(0, x, false));
            assertThrows(ClosedChannelException.class, () -> s.read(0, ByteBuffer.allocateDirect(4096)));
            ByteBuffer r = ByteBuffer.allocateDirect(4096);
            o.read(0, r);
            for (int i = 0; i < 4096; i++) assertEquals(0, r.get(i), "the other file is untouched");
        }
        s.close(); // twice is fine
    }
}
