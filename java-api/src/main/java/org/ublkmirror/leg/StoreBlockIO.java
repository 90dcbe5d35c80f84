package org.ublkmirror.leg;

import java.io.IOException;
import java.nio.ByteBuffer;

/** A window of a {@link Store} seen as blocks: {@code blockCount} blocks starting at byte {@code offset}. */
public class StoreBlockIO implements BlockIO {
    private final Store store;
    private final long offset;
    private final int blockSize;
    private final long blockCount;

    public StoreBlockIO(Store store, long offset, int blockSize, long blockCount) {
        this.store = store;
        this.offset = offset;
        this.blockSize = blockSize;
        this.blockCount = blockCount;
    }

    public Store store() {
        return store;
    }

    public long offset() {
        return offset;
    }

    @Override
    public int blockSize() {
        return blockSize;
    }

    @Override
    public long blockCount() {
        return blockCount;
    }

    @Override
    public void read(long block, ByteBuffer dst) throws IOException {
        BlockIO.checkRange(this, block, BlockIO.blocksOf(this, dst));
        store.read(offset + block * blockSize, dst);
    }

    @Override
    public void write(long block, ByteBuffer src, boolean fua) throws IOException {
        BlockIO.checkRange(this, block, BlockIO.blocksOf(this, src));
        store.write(offset + block * blockSize, src, fua);
    }

    @Override
    public void write(long block, WriteSource src, boolean fua) throws IOException {
        check(block, src);
        store.write(offset + block * blockSize, src, fua);
    }

    @Override
    public WriteSource.Pending startWrite(long block, WriteSource src, boolean fua) throws IOException {
        check(block, src);
        return store.startWrite(offset + block * blockSize, src, fua);
    }

    private void check(long block, WriteSource src) {
        BlockIO.checkRange(this, block, BlockIO.blocksOf(this, src.length()));
    }

    @Override
    public void flush() throws IOException {
        store.flush();
    }

    @Override
    public void discard(long block, long count) throws IOException {
        BlockIO.checkRange(this, block, count);
        store.discard(offset + block * blockSize, count * blockSize);
    }
}
