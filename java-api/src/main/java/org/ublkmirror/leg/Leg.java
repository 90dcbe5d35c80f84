package org.ublkmirror.leg;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * A leg: a {@link Store} carrying its own metadata in front of the volume's blocks (like md's
 * 1.2 superblock), so a file, a block device and a remote volume all look the same.
 *
 * <pre>
 * byte offset                      content
 * 0                                superblock slot A (4 KiB)      see {@link Superblock}
 * 4 KiB                            superblock slot B (4 KiB)
 * 8 KiB                            intent record slots A, B (2 x 4 KiB)   see fork.IntentRecord
 * 16 KiB                           tag journal, journalBlocks x 4 KiB ring see tags.TagJournalBlock
 * trackOffset                      tracking log slots A, B (2 x trackSlotBytes) see track.TrackingLogFormat
 * dataOffset (1 MiB aligned)       the volume: dataBlocks x blockSize
 * </pre>
 */
public final class Leg implements Closeable {
    public static final int META_BLOCK = 4096;
    public static final long SB_A = 0, SB_B = 4096, INTENT_OFFSET = 8192, JOURNAL_OFFSET = 16384;
    public static final int DEFAULT_JOURNAL_BLOCKS = 1024;
    public static final int DEFAULT_REGION_BLOCKS = 1024;
    static final long ALIGN = 1 << 20;

    private final Store store;
    private Superblock sb;
    private final StoreBlockIO data;

    private Leg(Store store, Superblock sb) {
        this.store = store;
        this.sb = sb;
        this.data = new StoreBlockIO(store, sb.dataOffset, sb.blockSize, sb.dataBlocks);
    }

    /** What create needs to know. */
    public record Spec(String name, UUID volumeUuid, Role role, int blockSize, long dataBlocks,
                       int journalBlocks, int regionBlocks, long currentGen) {
        public Spec {
            if (blockSize < 512 || Integer.bitCount(blockSize) != 1 || blockSize > (1 << 20)) {
                throw new IllegalArgumentException("block size " + blockSize + " is not a power of two between 512 and 1 MiB");
            }
        }
    }

    /**
     * Tracking log slot size for a volume: twice a plain bitmap (a dense log in a few epochs)
     * plus 256 KiB, in whole 4 KiB blocks. 64 MiB per TiB at 4 KiB blocks.
     */
    public static long trackSlotBytes(long dataBlocks) {
        return roundUp(dataBlocks / 4 + (256 << 10), META_BLOCK);
    }

    /** Bytes of metadata in front of the data for a volume of this many blocks. */
    public static long metadataBytes(long dataBlocks, int journalBlocks) {
        long track = JOURNAL_OFFSET + (long) journalBlocks * META_BLOCK;
        return roundUp(track + 2 * trackSlotBytes(dataBlocks), ALIGN);
    }

    /** The largest volume (in blocks) a store of {@code storeBytes} can hold. */
    public static long maxDataBlocks(long storeBytes, int blockSize, int journalBlocks) {
        long blocks = storeBytes / blockSize;
        while (blocks > 0 && metadataBytes(blocks, journalBlocks) + blocks * blockSize > storeBytes) {
            long over = metadataBytes(blocks, journalBlocks) + blocks * blockSize - storeBytes;
            blocks -= Math.max(1, (over + blockSize - 1) / blockSize);
        }
        return Math.max(0, blocks);
    }

    static long roundUp(long v, long a) {
        return (v + a - 1) / a * a;
    }

    /**
     * Does the store already hold something? Our metadata, or any non-zero byte in its first or
     * last MiB (where file systems and partition tables keep their signatures).
     */
    public static String probeContent(Store store) throws IOException {
        long size = store.size();
        ByteBuffer b = ByteBuffer.allocate((int) Math.min(size, ALIGN));
        store.read(0, b);
        b.flip();
        if (Superblock.hasMagic(b.duplicate()) || (size > SB_B + 8 && Superblock.hasMagic(b.duplicate().position((int) SB_B)))) {
            return "ublk-mirror metadata";
        }
        if (!isZero(b)) {
            return "data";
        }
        if (size > ALIGN) {
            ByteBuffer t = ByteBuffer.allocate((int) ALIGN);
            store.read(size - ALIGN, t);
            t.flip();
            if (!isZero(t)) return "data";
        }
        return null;
    }

    private static boolean isZero(ByteBuffer b) {
        for (int i = b.position(); i < b.limit(); i++) {
            if (b.get(i) != 0) return false;
        }
        return true;
    }

    /** Writes fresh metadata on a store (the caller has checked {@link #probeContent}). */
    public static Leg create(Store store, Spec spec) throws IOException {
        int jb = spec.journalBlocks() > 0 ? spec.journalBlocks() : DEFAULT_JOURNAL_BLOCKS;
        long blocks = spec.dataBlocks() > 0 ? spec.dataBlocks() : maxDataBlocks(store.size(), spec.blockSize(), jb);
        long meta = metadataBytes(blocks, jb);
        if (blocks <= 0 || meta + blocks * spec.blockSize() > store.size()) {
            throw new MetadataException(store.describe() + ": too small for a volume of " + blocks + " blocks of "
                    + spec.blockSize() + " bytes plus " + meta + " bytes of metadata; give a larger --size");
        }
        Superblock s = new Superblock();
        s.seq = 0;
        s.volumeUuid = spec.volumeUuid();
        s.legUuid = UUID.randomUUID();
        s.role = spec.role();
        s.blockSize = spec.blockSize();
        s.dataOffset = meta;
        s.dataBlocks = blocks;
        s.journalOffset = JOURNAL_OFFSET;
        s.journalBlocks = jb;
        s.flags = Superblock.FLAG_CLEAN;
        s.intentOffset = INTENT_OFFSET;
        s.regionBlocks = spec.regionBlocks() > 0 ? spec.regionBlocks() : DEFAULT_REGION_BLOCKS;
        s.trackOffset = JOURNAL_OFFSET + (long) jb * META_BLOCK;
        s.trackSlotBytes = trackSlotBytes(blocks);
        s.currentGen = spec.currentGen();
        s.createdMillis = System.currentTimeMillis();
        s.name = spec.name();
        s.objects = new Superblock.StorageObject[] {new Superblock.StorageObject(0, 0, 0, blocks, blocks)};
        // clear every metadata area: stale journal blocks, intents and logs must not be read back
        store.discard(0, meta);
        Leg leg = new Leg(store, s);
        leg.updateSuperblock(x -> { });
        leg.updateSuperblock(x -> { }); // both slots hold a valid copy
        store.flush();
        return leg;
    }

    /** Opens a leg, trusting only a superblock slot whose checksum holds; the newer valid slot wins. */
    public static Leg open(Store store) throws IOException {
        if (store.size() < JOURNAL_OFFSET) {
            throw new MetadataException(store.describe() + ": " + store.size() + " bytes is too small to be a leg");
        }
        Superblock a = null, b = null;
        String errA = null, errB = null;
        ByteBuffer sa = ByteBuffer.allocateDirect(Superblock.SLOT_SIZE), sbuf = ByteBuffer.allocateDirect(Superblock.SLOT_SIZE);
        store.read(SB_A, sa);
        store.read(SB_B, sbuf);
        sa.flip();
        sbuf.flip();
        try {
            a = Superblock.decode(sa, store.describe());
        } catch (MetadataException e) {
            errA = e.getMessage();
        }
        try {
            b = Superblock.decode(sbuf, store.describe());
        } catch (MetadataException e) {
            errB = e.getMessage();
        }
        Superblock best = a == null ? b : b == null ? a : (a.seq >= b.seq ? a : b);
        if (best == null) {
            if (!Superblock.hasMagic(sa) && !Superblock.hasMagic(sbuf)) {
                throw new MetadataException(store.describe() + ": holds no ublk-mirror metadata; run 'mirrorctl create' first");
            }
            throw new MetadataException(errA.contains("version") ? errA : errB.contains("version") ? errB
                    : store.describe() + ": both superblock copies are corrupt; recreate this leg with 'mirrorctl create --force' and resync it from its peer");
        }
        long need = best.dataOffset + best.dataBlocks * best.blockSize;
        if (need > store.size()) {
            throw new MetadataException(store.describe() + ": is " + store.size() + " bytes but its superblock needs "
                    + need + " (truncated?); restore the leg to its full size");
        }
        return new Leg(store, best);
    }

    public Store store() {
        return store;
    }

    /** The volume's blocks on this leg. */
    public StoreBlockIO data() {
        return data;
    }

    /** A copy of the current superblock. */
    public synchronized Superblock superblock() {
        return sb.copy();
    }

    /** Block size: fixed at create, read without copying the superblock (the data path asks per request). */
    public int blockSize() {
        return data.blockSize();
    }

    /** The storage object {@code id} as the superblock now says, without copying the superblock; null if none. */
    public synchronized Superblock.StorageObject object(int id) {
        return sb.object(id);
    }

    /**
     * Changes the superblock durably: the edit is applied to a copy, the sequence number bumped,
     * and the copy written with FUA into the older slot. On failure nothing changes in memory.
     */
    public synchronized Superblock updateSuperblock(Consumer<Superblock> edit) throws IOException {
        Superblock next = sb.copy();
        edit.accept(next);
        next.seq = sb.seq + 1;
        long slot = (next.seq & 1) == 1 ? SB_A : SB_B;
        store.write(slot, next.encode(), true);
        sb = next;
        return next.copy();
    }

    public String describe() {
        return store.describe();
    }

    @Override
    public void close() throws IOException {
        store.close();
    }
}
