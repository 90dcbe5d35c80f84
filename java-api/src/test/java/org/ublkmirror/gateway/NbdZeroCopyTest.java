package org.ublkmirror.gateway;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.Store;
import org.ublkmirror.sys.LibC;
import org.ublkmirror.sys.Splice;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The copies the NBD path saves: the gateway splicing large WRITE payloads from the socket into
 * the export's file ({@link Splice}, {@link SocketPayload}), and the client sending a local
 * file's bytes with sendfile ({@link NbdStore#transferFrom}). Bytes are checked on the files;
 * the failure paths keep the connection in step (a file-side error is an error reply, the next
 * request is read where it starts) or end it (the peer gone), and never hang.
 */
class NbdZeroCopyTest {
    @TempDir
    Path dir;

    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    /** A connected pair on loopback: [0] the client end, [1] the accepted end. */
    private static SocketChannel[] pair() throws IOException {
        try (ServerSocketChannel l = ServerSocketChannel.open()) {
            l.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
            SocketChannel c = SocketChannel.open(l.getLocalAddress());
            return new SocketChannel[] {c, l.accept()};
        }
    }

    /** A file of {@code size} zero bytes in the test's directory, and a descriptor on it opened with {@code flags}. */
    private int zeroFile(int size, int flags) throws IOException {
        Path f = dir.resolve("f");
        if (!Files.exists(f)) Files.write(f, new byte[size]);
        int fd = LibC.get().open(f.toString(), flags | LibC.O_CLOEXEC, 0);
        assertTrue(fd >= 0, "open " + f);
        return fd;
    }

    /** Sends {@code data} in pieces of {@code piece} bytes with a pause between, on another thread. */
    private static CompletableFuture<Void> trickle(SocketChannel ch, byte[] data, int piece) {
        return CompletableFuture.runAsync(() -> {
            try {
                for (int off = 0; off < data.length; off += piece) {
                    ch.write(ByteBuffer.wrap(data, off, Math.min(piece, data.length - off)));
                    if ((off / piece) % 16 == 0) Thread.sleep(1);
                }
            } catch (IOException | InterruptedException e) {
                throw new RuntimeException(e);
            }
        });
    }

    @Test
    void spliceMovesExactlyThePayloadAndAFileErrorLeavesTheStreamInStep() throws Exception {
        SocketChannel[] p = pair();
        Path f = dir.resolve("f");
        LibC c = LibC.get();
        int rw = zeroFile(4 << 20, LibC.O_RDWR);
        int ro = zeroFile(4 << 20, LibC.O_RDONLY);
        Splice sp = Splice.open();
        try (SocketChannel a = p[0]; SocketChannel b = p[1]) {
            assertTrue(sp != null, "splice is available on this machine");
            int fd = Splice.descriptorOf(b);
            assertTrue(fd >= 0, "the socket channel's descriptor is found");
            // 3 MiB in 4 KiB pieces, then a marker: more than the pipe holds, in short reads
            byte[] payload = random(3 << 20, 1);
            byte[] tail = random(200_000, 2);
            ByteBuffer all = ByteBuffer.allocate(payload.length + 4 + tail.length + 4);
            all.put(payload).putInt(0x11223344).put(tail).putInt(0x55667788);
            CompletableFuture<Void> sent = trickle(a, all.array(), 4096);
            sp.socketToFile(fd, rw, 8192, payload.length);
            ByteBuffer m = ByteBuffer.allocate(4);
            while (m.hasRemaining()) b.read(m);
            assertEquals(0x11223344, m.flip().getInt(), "the next bytes on the stream are the ones after the payload");
            byte[] onFile = Files.readAllBytes(f);
            assertArrayEquals(payload, Arrays.copyOfRange(onFile, 8192, 8192 + payload.length));
            assertTrue(Arrays.equals(new byte[8192], Arrays.copyOf(onFile, 8192)), "nothing before the offset");
            // a descriptor not open for writing: a file-side error, and the tail consumed all the same
            Splice.FileSideException e = assertThrows(Splice.FileSideException.class,
                    () -> sp.socketToFile(fd, ro, 0, tail.length));
            assertTrue(e.getMessage().toLowerCase().contains("bad file descriptor"), e.getMessage());
            m.clear();
            while (m.hasRemaining()) b.read(m);
            assertEquals(0x55667788, m.flip().getInt(), "the stream is still in step after the file refused the bytes");
            assertArrayEquals(payload, Arrays.copyOfRange(Files.readAllBytes(f), 8192, 8192 + payload.length), "the file unchanged");
            sent.get(10, TimeUnit.SECONDS);
            // the peer gone in the middle of a payload: an end of stream, not a file error
            a.write(ByteBuffer.wrap(new byte[1000]));
            a.close();
            IOException eof = assertThrows(IOException.class, () -> sp.socketToFile(fd, rw, 0, 1 << 20));
            assertFalse(eof instanceof Splice.FileSideException);
        } finally {
            if (sp != null) sp.close();
            c.close(rw);
            c.close(ro);
        }
    }

    @Test
    void aTargetThatRefusesSpliceFallsBackToPwriteAndKeepsTheStreamInStep() throws Exception {
        // an eventfd has no splice_write (EINVAL) and no offsets (pwrite: ESPIPE): the fallback is
        // taken, fails on the file side, and the payload is consumed all the same
        boolean arm = "aarch64".equals(System.getProperty("os.arch"));
        int efd = (int) LibC.get().syscall(arm ? 19 : 290, 0, 0, 0, 0, 0, 0);
        assertTrue(efd >= 0, "eventfd2");
        SocketChannel[] p = pair();
        Splice sp = Splice.open();
        try (SocketChannel a = p[0]; SocketChannel b = p[1]) {
            byte[] payload = random(2 << 20, 12);
            ByteBuffer all = ByteBuffer.allocate(payload.length + 4).put(payload).putInt(0x7e57f00d);
            CompletableFuture<Void> sent = trickle(a, all.array(), 65536);
            Splice.FileSideException e = assertThrows(Splice.FileSideException.class,
                    () -> sp.socketToFile(Splice.descriptorOf(b), efd, 0, payload.length));
            assertTrue(e.getMessage().toLowerCase().contains("illegal seek"), e.getMessage());
            ByteBuffer m = ByteBuffer.allocate(4);
            while (m.hasRemaining()) b.read(m);
            assertEquals(0x7e57f00d, m.flip().getInt(), "the stream is in step after the fallback failed");
            sent.get(10, TimeUnit.SECONDS);
        } finally {
            sp.close();
            LibC.get().close(efd);
        }
    }

    @Test
    void aShutdownWakesAReaderBlockedInSplice() throws Exception {
        SocketChannel[] p = pair();
        int rw = zeroFile(1 << 20, LibC.O_RDWR);
        Splice sp = Splice.open();
        try (SocketChannel a = p[0]; SocketChannel b = p[1]) {
            int own = Splice.dup(Splice.descriptorOf(b));
            assertTrue(own >= 0);
            try {
                a.write(ByteBuffer.wrap(new byte[100])); // the peer sends part of a payload and stalls
                CompletableFuture<Throwable> r = CompletableFuture.supplyAsync(() -> {
                    try {
                        sp.socketToFile(own, rw, 0, 1 << 20);
                        return null;
                    } catch (IOException e) {
                        return e;
                    }
                });
                Thread.sleep(200);
                assertFalse(r.isDone(), "waiting for the rest of the payload");
                b.socket().shutdownInput(); // what NbdServer's kill does before closing
                Throwable t = r.get(10, TimeUnit.SECONDS);
                assertTrue(t instanceof EOFException, String.valueOf(t));
            } finally {
                LibC.get().close(own);
            }
        } finally {
            sp.close();
            LibC.get().close(rw);
        }
    }

    @Test
    void aPayloadThatTheFileRefusesIsReadOffTheWireBeforeTheNextRequest() throws Exception {
        SocketChannel[] p = pair();
        int ro = zeroFile(1 << 20, LibC.O_RDONLY);
        Splice sp = Splice.open();
        PayloadPool pool = new PayloadPool(2);
        try (SocketChannel a = p[0]; SocketChannel b = p[1]) {
            byte[] payload = random(300_000, 3); // part read ahead with the header, part still in the socket
            ByteBuffer msg = ByteBuffer.allocate(4 + payload.length + 4);
            msg.putInt(7).put(payload).putInt(0x0badcafe).flip();
            while (msg.hasRemaining()) a.write(msg);
            WireIn w = new WireIn(b, new byte[0]);
            assertEquals(7, w.readInt());
            SocketPayload sp1 = new SocketPayload(w, Splice.descriptorOf(b), sp, pool, payload.length);
            assertThrows(IOException.class, () -> sp1.writeTo(ro, 0));
            assertFalse(sp1.socketFailed());
            assertFalse(sp1.spliced());
            sp1.finish();
            assertEquals(0x0badcafe, w.readInt(), "the rest of the refused payload was consumed");
            // and a store that takes buffers only gets the same bytes through buffer()
            msg.clear();
            msg.putInt(8).put(payload).putInt(0x600dcafe).flip();
            while (msg.hasRemaining()) a.write(msg);
            assertEquals(8, w.readInt());
            SocketPayload sp2 = new SocketPayload(w, Splice.descriptorOf(b), sp, pool, payload.length);
            ByteBuffer got = sp2.buffer();
            byte[] g = new byte[got.remaining()];
            got.get(g);
            assertArrayEquals(payload, g);
            assertFalse(sp2.writeTo(ro, 0), "once read into the buffer it does not write itself");
            sp2.finish();
            assertEquals(0x600dcafe, w.readInt());
        } finally {
            sp.close();
            LibC.get().close(ro);
        }
    }

    @Test
    void theGatewaySplicesLargeWritesAndTheBytesLandWhole() throws Exception {
        int size = 32 << 20;
        Path f = dir.resolve("sec.img");
        try (FileStore back = FileStore.createSparse(f, size);
             NbdServer s = NbdServer.start(0, Map.of("sec", Export.of(back)));
             NbdStore nbd = NbdStore.connect("127.0.0.1", s.port(), "sec")) {
            byte[] model = new byte[size];
            Random rnd = new Random(5);
            // below the splice threshold, at it, a pipe's worth, more than a pipe, and a FUA one (workers)
            int[] sizes = {NbdServer.SPLICE_MIN - 4096, NbdServer.SPLICE_MIN, 1 << 20, 3 << 20, 1 << 20};
            long spliced = 0;
            long pos = 4096;
            for (int round = 0; round < 3; round++) {
                for (int i = 0; i < sizes.length; i++) {
                    int n = sizes[i];
                    boolean fua = i == sizes.length - 1;
                    byte[] b = new byte[n];
                    rnd.nextBytes(b);
                    if (pos + n > size) pos = 4096;
                    nbd.write(pos, round == 1 ? ByteBuffer.wrap(b) : ByteBuffer.allocateDirect(n).put(b).flip(), fua);
                    System.arraycopy(b, 0, model, (int) pos, n);
                    if (n >= NbdServer.SPLICE_MIN && !fua) spliced++;
                    pos += n + 12288;
                }
            }
            nbd.flush();
            assertArrayEquals(model, Files.readAllBytes(f), "the gateway's file holds what was sent");
            assertEquals(spliced, s.splicedWrites(), "every large non-FUA write was spliced, no other");
            // a write past the end is refused before any byte moves, and the connection goes on
            IOException e = assertThrows(IOException.class,
                    () -> nbd.requestUnchecked(Nbd.CMD_WRITE, 0, size - 4096, 1 << 20, ByteBuffer.allocate(1 << 20)));
            assertTrue(e.getMessage().contains("ENOSPC") || e.getMessage().toLowerCase().contains("no space"), e.getMessage());
            assertEquals(spliced, s.splicedWrites());
            byte[] b = random(1 << 20, 9);
            nbd.write(0, ByteBuffer.wrap(b), false);
            System.arraycopy(b, 0, model, 0, b.length);
            assertArrayEquals(model, Files.readAllBytes(f));
        }
    }

    @Test
    void theClientSendsALocalFilesBytesWithSendfile() throws Exception {
        int size = 16 << 20;
        Path src = dir.resolve("prim.img");
        byte[] data = random(size, 4);
        Files.write(src, data);
        Path f = dir.resolve("sec.img");
        try (FileStore prim = FileStore.open(src);
             FileStore back = FileStore.createSparse(f, size);
             NbdServer s = NbdServer.start(0, Map.of("sec", Export.of(back)));
             NbdStore nbd = NbdStore.connect("127.0.0.1", s.port(), "sec",
                     NbdStore.Options.defaults().withIoTimeout(Duration.ofSeconds(30)))) {
            byte[] model = new byte[size];
            // 4 MiB at 1 MiB from 2 MiB of the source; a 1 MiB piece; one block
            assertTrue(nbd.transferFrom(1 << 20, prim, 2 << 20, 4 << 20));
            System.arraycopy(data, 2 << 20, model, 1 << 20, 4 << 20);
            assertTrue(nbd.transferFrom(8 << 20, prim, 0, 1 << 20));
            System.arraycopy(data, 0, model, 8 << 20, 1 << 20);
            assertTrue(nbd.transferFrom(12 << 20, prim, size - 4096, 4096));
            System.arraycopy(data, size - 4096, model, 12 << 20, 4096);
            nbd.flush();
            assertArrayEquals(model, Files.readAllBytes(f));
            // a source range past the source's end: refused before anything is sent, the connection goes on
            EOFException eof = assertThrows(EOFException.class, () -> nbd.transferFrom(0, prim, size - 4096, 8192));
            assertTrue(eof.getMessage().contains("past the end"), eof.getMessage());
            assertTrue(nbd.healthy());
            assertArrayEquals(model, Files.readAllBytes(f), "nothing written by the refused transfer");
            // a source that is not a local file: not taken, nothing sent
            Store mem = new MemStoreForTest(1 << 20);
            assertFalse(nbd.transferFrom(0, mem, 0, 4096));
            assertArrayEquals(model, Files.readAllBytes(f));
        }
    }

    /**
     * A resync from a local file primary to a secondary behind the gateway, both ends zero-copy
     * (sendfile out of the primary, splice into the gateway's file), while writers rewrite blocks
     * of the dirty set on both legs under the range lock, as the forker does: the legs end
     * byte-identical, every dirty block was copied once, and no copy read the primary through Java.
     */
    @Test
    void aResyncOverTheGatewayRacingWritersLeavesTheLegsIdentical() throws Exception {
        final int bs = 4096, blocks = 8192; // 32 MiB
        final long off = 3 * bs;
        Path pf = dir.resolve("p.img"), sf = dir.resolve("s.img");
        Files.write(pf, random((int) (off + (long) blocks * bs), 21));
        Files.write(sf, random((int) (off + (long) blocks * bs), 22));
        org.roaringbitmap.longlong.Roaring64NavigableMap dirty = new org.roaringbitmap.longlong.Roaring64NavigableMap();
        Random rnd = new Random(23);
        for (int i = 0; i < 600; i++) {
            long start = rnd.nextInt(blocks - 300);
            dirty.addRange(start, start + 1 + rnd.nextInt(300));
        }
        // blocks outside the dirty set are identical already
        byte[] pa = Files.readAllBytes(pf), sa = Files.readAllBytes(sf);
        for (long b = 0; b < blocks; b++) {
            if (!dirty.contains(b)) System.arraycopy(pa, (int) (off + b * bs), sa, (int) (off + b * bs), bs);
        }
        Files.write(sf, sa);
        try (FileStore ps = FileStore.open(pf);
             FileStore back = FileStore.open(sf);
             NbdServer s = NbdServer.start(0, Map.of("sec", Export.of(back)));
             NbdStore nbd = NbdStore.connect("127.0.0.1", s.port(), "sec",
                     NbdStore.Options.defaults().withIoTimeout(Duration.ofSeconds(30)))) {
            org.ublkmirror.leg.BlockIO p = new org.ublkmirror.leg.StoreBlockIO(ps, off, bs, blocks);
            org.ublkmirror.leg.BlockIO q = new org.ublkmirror.leg.StoreBlockIO(nbd, off, bs, blocks);
            org.ublkmirror.fork.RangeLock lock = new org.ublkmirror.fork.RangeLock();
            java.util.concurrent.atomic.AtomicLong copied = new java.util.concurrent.atomic.AtomicLong();
            org.ublkmirror.resync.Resync r = new org.ublkmirror.resync.Resync(p, q, lock,
                    org.ublkmirror.resync.Extents.of(dirty, 256), null, new org.ublkmirror.resync.ResyncListener() {
                        @Override
                        public void onCopied(org.ublkmirror.resync.Extent e) {
                            copied.addAndGet(e.count());
                        }

                        @Override
                        public void barrier() {
                        }

                        @Override
                        public void checkpoint() {
                        }
                    }, org.ublkmirror.resync.Resync.Options.DEFAULT.withMaxBlocksPerCopy(256).withCheckpointBytes(8L << 20));
            java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
            java.util.concurrent.atomic.AtomicLong writes = new java.util.concurrent.atomic.AtomicLong();
            java.util.List<CompletableFuture<Void>> writers = new java.util.ArrayList<>();
            for (int t = 0; t < 3; t++) {
                long seed = 30 + t;
                writers.add(CompletableFuture.runAsync(() -> {
                    Random wr = new Random(seed);
                    long[] starts = dirty.toArray();
                    try {
                        while (!stop.get()) {
                            long b = starts[wr.nextInt(starts.length)];
                            int n = (int) Math.min(1 + wr.nextInt(64), blocks - b);
                            byte[] d = new byte[n * bs];
                            wr.nextBytes(d);
                            try (var held = lock.lock(b, n)) {
                                p.write(b, ByteBuffer.wrap(d), false);
                                q.write(b, ByteBuffer.wrap(d), false);
                            }
                            writes.incrementAndGet();
                        }
                    } catch (IOException | InterruptedException e) {
                        throw new RuntimeException(e);
                    }
                }));
            }
            org.ublkmirror.resync.Progress pr;
            try {
                pr = r.run();
            } finally {
                stop.set(true);
                for (CompletableFuture<Void> w : writers) w.get(30, TimeUnit.SECONDS);
            }
            assertEquals(org.ublkmirror.resync.Progress.State.DONE, pr.state(), String.valueOf(pr.failure()));
            assertEquals(dirty.getLongCardinality(), copied.get(), "each dirty block copied once, no other");
            assertTrue(writes.get() > 0, "writers ran beside the copies");
            assertEquals(0, r.timing().read(), "the copies sent the primary's pages, no read through Java");
            assertTrue(s.splicedWrites() > 0, "and the gateway spliced them");
            nbd.flush();
        }
        pa = Files.readAllBytes(pf);
        sa = Files.readAllBytes(sf);
        assertArrayEquals(Arrays.copyOfRange(pa, (int) off, pa.length), Arrays.copyOfRange(sa, (int) off, sa.length),
                "the legs' data areas are identical");
    }

    /** A store in memory (not a file: the client cannot sendfile from it). */
    private static final class MemStoreForTest implements Store {
        private final byte[] b;

        MemStoreForTest(int n) {
            b = new byte[n];
        }

        public long size() {
            return b.length;
        }

        public void read(long pos, ByteBuffer dst) {
            dst.put(b, (int) pos, dst.remaining());
        }

        public void write(long pos, ByteBuffer src, boolean fua) {
            src.get(b, (int) pos, src.remaining());
        }

        public void flush() {
        }

        public void discard(long pos, long len) {
            Arrays.fill(b, (int) pos, (int) (pos + len), (byte) 0);
        }

        public String describe() {
            return "memory";
        }

        public void close() {
        }
    }

    @Test
    void closingTheGatewayUnderAHalfSentPayloadDoesNotHang() throws Exception {
        Path f = dir.resolve("sec.img");
        try (FileStore back = FileStore.createSparse(f, 8 << 20)) {
            NbdServer s = NbdServer.start(0, Map.of("sec", Export.of(back)));
            try (Socket raw = new Socket("127.0.0.1", s.port())) {
                DataInputStream in = new DataInputStream(raw.getInputStream());
                DataOutputStream out = new DataOutputStream(raw.getOutputStream());
                assertEquals(Nbd.NBDMAGIC, in.readLong());
                assertEquals(Nbd.IHAVEOPT, in.readLong());
                in.readUnsignedShort();
                out.writeInt(Nbd.FLAG_C_FIXED_NEWSTYLE | Nbd.FLAG_C_NO_ZEROES);
                byte[] name = "sec".getBytes();
                out.writeLong(Nbd.IHAVEOPT);
                out.writeInt(Nbd.OPT_EXPORT_NAME);
                out.writeInt(name.length);
                out.write(name);
                out.flush();
                assertEquals(8 << 20, in.readLong());
                in.readUnsignedShort();
                // a 1 MiB WRITE with only 200 KiB of its payload sent: the reader sits in splice
                out.writeInt(Nbd.REQUEST_MAGIC);
                out.writeShort(0);
                out.writeShort(Nbd.CMD_WRITE);
                out.writeLong(1);
                out.writeLong(0);
                out.writeInt(1 << 20);
                out.write(random(200 << 10, 6));
                out.flush();
                Thread.sleep(300);
                assertTimeoutPreemptively(Duration.ofSeconds(NbdServer.DRAIN_MILLIS / 1000 + 10), s::close);
                assertEquals(-1, in.read(), "the gateway hung up");
            }
            assertEquals(0, s.splicedWrites(), "the half-sent write was not counted as done");
        }
    }
}
