package org.ublkmirror.gateway;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.leg.FileStore;

import java.io.ByteArrayInputStream;
import java.io.EOFException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ReadableByteChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Plain-TCP NBD through the sockets' channels: {@link WireIn} (headers from its read-ahead, a
 * payload partly from it and partly straight from the socket, whatever the read sizes), and the
 * gateway writing payloads from pooled direct buffers: the bytes on the gateway's file are those
 * sent, for payloads below, at and above the pooled size, from direct and heap buffers, from
 * several threads at once; READs answered from pooled direct buffers and from heap arrays alike.
 */
class NbdChannelTest {
    @TempDir
    Path dir;

    /** A channel that gives at most {@code chunk} bytes per read (a socket's short reads). */
    private static ReadableByteChannel trickle(byte[] data, int chunk) {
        InputStream in = new ByteArrayInputStream(data) {
            @Override
            public synchronized int read(byte[] b, int off, int len) {
                return super.read(b, off, Math.min(len, chunk));
            }
        };
        return Channels.newChannel(in);
    }

    @Test
    void wireInReadsHeadersAndPayloadsAcrossShortReadsAndCarriedBytes() throws Exception {
        Random rnd = new Random(7);
        byte[] payload = new byte[200_000]; // larger than the read-ahead: part buffered, part straight
        rnd.nextBytes(payload);
        ByteBuffer msg = ByteBuffer.allocate(4 + 2 + 8 + payload.length + 4);
        msg.putInt(0x25609513).putShort((short) 0xfffe).putLong(-3L).put(payload).putInt(42);
        byte[] all = msg.array();
        for (int carried : new int[] {0, 3, 14, 70_000}) {
            for (int chunk : new int[] {1, 7, 65536, 1 << 20}) {
                if (chunk == 1 && carried < 14) continue; // byte-at-a-time over 200 KB: covered by 7
                WireIn w = new WireIn(trickle(Arrays.copyOfRange(all, carried, all.length), chunk), Arrays.copyOf(all, carried));
                assertEquals(0x25609513, w.readInt());
                assertEquals(0xfffe, w.readUnsignedShort());
                assertEquals(-3L, w.readLong());
                ByteBuffer got = ByteBuffer.allocateDirect(payload.length);
                w.readFully(got);
                assertEquals(payload.length, got.position());
                byte[] g = new byte[payload.length];
                got.flip().get(g);
                assertArrayEquals(payload, g, "carried " + carried + ", reads of " + chunk);
                assertEquals(42, w.readInt());
                EOFException eof = assertThrows(EOFException.class, w::readInt);
                assertEquals("the peer closed the connection", eof.getMessage());
            }
        }
        // the peer gone in the middle of a payload
        WireIn w = new WireIn(trickle(new byte[1000], 100), new byte[0]);
        assertThrows(EOFException.class, () -> w.readFully(ByteBuffer.allocate(2000)));
    }

    @Test
    void payloadsReachTheGatewaysFileWholeFromDirectAndHeapBuffersAndManyThreads() throws Exception {
        assertTrue(NbdServer.CHANNELS, "this test is about the channel path (-Dublkmirror.nbd.channels=false turns it off)");
        int size = 16 << 20;
        Path f = dir.resolve("sec.img");
        try (FileStore back = FileStore.createSparse(f, size);
             NbdServer s = NbdServer.start(0, Map.of("sec", Export.of(back)));
             NbdStore nbd = NbdStore.connect("127.0.0.1", s.port(), "sec")) {
            byte[] model = new byte[size];
            Random rnd = new Random(11);
            // below, at and above the pooled payload size (1 MiB: the larger ones are read into a heap array)
            int[] sizes = {4096, 65536, PayloadPool.SIZE, PayloadPool.SIZE + 4096, 3 << 20};
            long pos = 0;
            for (int i = 0; i < sizes.length * 2; i++) {
                int n = sizes[i % sizes.length];
                byte[] b = new byte[n];
                rnd.nextBytes(b);
                ByteBuffer src = i % 2 == 0 ? ByteBuffer.allocateDirect(n).put(b).flip() : ByteBuffer.wrap(b);
                if (pos + n > size) pos = 0;
                nbd.write(pos, src, false);
                System.arraycopy(b, 0, model, (int) pos, n);
                pos += n + 8192;
            }
            // eight threads writing 64 KiB and 1 MiB blocks at once, each to its own region
            ExecutorService ex = Executors.newFixedThreadPool(8);
            try {
                List<Future<?>> fs = new ArrayList<>();
                for (int t = 0; t < 8; t++) {
                    int region = t * (2 << 20);
                    long seed = 100 + t;
                    fs.add(ex.submit(() -> {
                        Random r = new Random(seed);
                        for (int k = 0; k < 20; k++) {
                            int n = k % 2 == 0 ? 65536 : 1 << 20;
                            int at = region + r.nextInt((2 << 20) - n + 1) / 4096 * 4096;
                            byte[] b = new byte[n];
                            r.nextBytes(b);
                            nbd.write(at, ByteBuffer.allocateDirect(n).put(b).flip(), k % 5 == 0);
                            synchronized (model) {
                                System.arraycopy(b, 0, model, at, n);
                            }
                        }
                        return null;
                    }));
                }
                for (Future<?> fu : fs) fu.get();
            } finally {
                ex.shutdown();
            }
            nbd.flush();
            assertArrayEquals(model, Files.readAllBytes(f), "the gateway's file holds what was sent");
            ByteBuffer back2 = ByteBuffer.allocate(size);
            nbd.read(0, back2);
            assertArrayEquals(model, back2.array(), "and reads back the same through NBD (one READ above the pooled size)");
            // READs answered from pooled direct buffers (up to 1 MiB) and from heap arrays, many at once
            ExecutorService rx = Executors.newFixedThreadPool(6);
            try {
                List<Future<?>> fs = new ArrayList<>();
                for (int t = 0; t < 6; t++) {
                    long seed = 200 + t;
                    fs.add(rx.submit(() -> {
                        Random r = new Random(seed);
                        int[] lens = {4096, 65536, PayloadPool.SIZE, PayloadPool.SIZE + 4096};
                        for (int k = 0; k < 24; k++) {
                            int n = lens[k % lens.length];
                            int at = r.nextInt(size - n + 1) / 4096 * 4096;
                            ByteBuffer b = k % 2 == 0 ? ByteBuffer.allocateDirect(n) : ByteBuffer.allocate(n);
                            nbd.read(at, b);
                            byte[] g = new byte[n];
                            b.flip().get(g);
                            assertArrayEquals(Arrays.copyOfRange(model, at, at + n), g, n + " bytes at " + at);
                        }
                        return null;
                    }));
                }
                for (Future<?> fu : fs) fu.get();
            } finally {
                rx.shutdown();
            }
        }
    }
}
