package org.ublkmirror.sys;

import org.junit.jupiter.api.Test;
import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.resync.Extents;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class NativeLoopsTest {
    static NativeLoops lib() {
        NativeLoops n = NativeLoops.load();
        assertNotNull(n, "libublkmirror.so with the resync loops: build it with make -C native; looked at "
                + org.ublkmirror.frontend.ublk.UblkNative.Holder.candidates());
        return n;
    }

    @Test
    void scanMatchesExtentsOfOnEveryContainerKind() {
        NativeLoops n = lib();
        Random rnd = new Random(7);
        for (int round = 0; round < 40; round++) {
            Roaring64NavigableMap m = new Roaring64NavigableMap();
            long span = 1L << (16 + rnd.nextInt(12));
            long base = rnd.nextBoolean() ? 0 : (long) rnd.nextInt(1 << 20) << 20; // crosses the 32-bit high keys
            int kind = round % 4;
            for (int i = 0; i < 2000; i++) {
                long b = base + (long) (rnd.nextDouble() * span);
                switch (kind) {
                    case 0 -> m.addLong(b);                                   // array containers
                    case 1 -> m.addRange(b, b + 1 + rnd.nextInt(300));        // runs, spanning containers
                    case 2 -> { for (int k = 0; k < 40; k++) m.addLong(b + rnd.nextInt(64)); } // bitmaps
                    default -> { if (rnd.nextBoolean()) m.addRange(b, b + rnd.nextInt(70000) + 1); else m.addLong(b); }
                }
            }
            if (round % 2 == 1) m.runOptimize();
            long max = new long[]{1, 7, 64, 256, 1 << 20}[round % 5];
            assertEquals(Extents.of(m, max), n.extents(m, max), "round " + round + " max " + max);
        }
        assertEquals(List.of(), n.extents(new Roaring64NavigableMap(), 256));
    }

    @Test
    void copyRangeCopiesBytesBothWays(@org.junit.jupiter.api.io.TempDir Path dir) throws IOException {
        NativeLoops n = lib();
        Path a = dir.resolve("a"), b = dir.resolve("b");
        byte[] data = new byte[3 << 20];
        new Random(1).nextBytes(data);
        Files.write(a, data);
        Files.write(b, new byte[4 << 20]);
        int fa = LibC.get().open(a.toString(), LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
        int fb = LibC.get().open(b.toString(), LibC.O_RDWR | LibC.O_CLOEXEC, 0);
        try {
            ByteBuffer buf = ByteBuffer.allocateDirect(64 << 10); // smaller than the copy: several rounds
            n.copy(fa, 4096, fb, 8192, 1 << 20, buf, 0, "cfr");
            n.copy(fa, (1 << 20) + 4096, fb, (1 << 20) + 8192, (1 << 20) + 12345, buf, NativeLoops.COPY_NO_CFR, "rw");
            IOException past = assertThrows(IOException.class, () -> n.copy(fa, 3 << 20, fb, 0, 4096, buf, NativeLoops.COPY_NO_CFR, "eof"));
            assertTrue(past.getMessage().contains("eof"), past.getMessage());
        } finally {
            LibC.get().close(fa);
            LibC.get().close(fb);
        }
        byte[] got = Files.readAllBytes(b);
        int len = (2 << 20) + 12345;
        assertArrayEquals(java.util.Arrays.copyOfRange(data, 4096, 4096 + len), java.util.Arrays.copyOfRange(got, 8192, 8192 + len));
        assertEquals(0, got[8191]);
        assertEquals(0, got[8192 + len]);
    }

    @Test
    void absentLibraryLoadsAsNull(@org.junit.jupiter.api.io.TempDir Path dir) throws IOException {
        Path fake = dir.resolve("libublkmirror.so");
        Files.write(fake, new byte[]{1, 2, 3});
        assertNull(NativeLoops.loadFrom(List.of(dir.resolve("nothing.so"), fake)));
    }
}
