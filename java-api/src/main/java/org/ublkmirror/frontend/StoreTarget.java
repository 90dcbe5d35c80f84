package org.ublkmirror.frontend;

import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.WriteSource;

import java.io.IOException;
import java.nio.ByteBuffer;

/** A plain file store served as a volume (no mirror): standalone servers and benchmarks. */
public final class StoreTarget implements BlockTarget {
    private final FileStore store;
    private final int blockSize;
    private final long size;

    public StoreTarget(FileStore store, int blockSize) {
        this.store = store;
        this.blockSize = blockSize;
        this.size = store.size() / blockSize * blockSize;
    }

    @Override
    public long sizeBytes() {
        return size;
    }

    @Override
    public int blockSize() {
        return blockSize;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        store.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src, boolean fua) throws IOException {
        store.write(offset, src, fua);
    }

    @Override
    public void write(long offset, WriteSource src, boolean fua) throws IOException {
        store.write(offset, src, fua);
    }

    @Override
    public WriteSource.Pending startWrite(long offset, WriteSource src) throws IOException {
        return store.startWrite(offset, src, false);
    }

    @Override
    public void flush() throws IOException {
        store.flush();
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        store.discard(offset, length);
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        store.discard(offset, length); // a punched hole reads as zeroes
    }

    /** A write without FUA goes into the page cache. */
    @Override
    public boolean writeWouldNotWait(long offset, long length) {
        return true;
    }

    @Override
    public DirectRead directRead() throws IOException {
        return new DirectRead(store.openReadOnlyDescriptor(), 0, size, store.describe());
    }
}
