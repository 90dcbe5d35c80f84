package org.ublkmirror.it.fuse;

import org.ublkmirror.frontend.BlockTarget;
import org.ublkmirror.leg.FileStore;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;

/** A test volume: a sparse file in a temp dir behind a FileStore, counting what reaches it. */
final class FileTarget implements BlockTarget, Closeable {
    final FileStore store;
    final int blockSize;
    final AtomicLong reads = new AtomicLong(), writes = new AtomicLong(), flushes = new AtomicLong(),
            discards = new AtomicLong(), zeroes = new AtomicLong(), discardedBytes = new AtomicLong();
    /** Set by a test to make writes hang (watchdog test). */
    volatile java.util.concurrent.CountDownLatch writeGate;

    private FileTarget(FileStore store, int blockSize) {
        this.store = store;
        this.blockSize = blockSize;
    }

    static FileTarget create(Path file, long size) throws IOException {
        return new FileTarget(FileStore.createSparse(file, size), 4096);
    }

    Path path() {
        return store.path();
    }

    @Override
    public long sizeBytes() {
        return store.size();
    }

    @Override
    public int blockSize() {
        return blockSize;
    }

    private void aligned(long offset, long len) {
        if (offset % blockSize != 0 || len % blockSize != 0) {
            throw new IllegalArgumentException("unaligned I/O: " + len + " bytes at " + offset);
        }
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        reads.incrementAndGet();
        store.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src, boolean fua) throws IOException {
        writes.incrementAndGet();
        java.util.concurrent.CountDownLatch g = writeGate;
        if (g != null) {
            try {
                g.await();
            } catch (InterruptedException e) {
                throw new IOException("interrupted", e);
            }
        }
        store.write(offset, src, fua);
    }

    @Override
    public void flush() throws IOException {
        flushes.incrementAndGet();
        store.flush();
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        aligned(offset, length);
        discards.incrementAndGet();
        discardedBytes.addAndGet(length);
        store.discard(offset, length);
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        aligned(offset, length);
        zeroes.incrementAndGet();
        store.discard(offset, length);
    }

    @Override
    public void close() throws IOException {
        store.close();
    }
}
