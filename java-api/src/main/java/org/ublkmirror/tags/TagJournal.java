package org.ublkmirror.tags;

import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Store;
import org.ublkmirror.leg.Superblock;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.UUID;
import java.util.zip.CRC32C;

/**
 * The tag table of one leg, persisted as a ring of {@link TagJournalBlock}s in the leg's
 * metadata area. Entries are appended in groups (one block write carries every entry that
 * arrived while the previous block was being written: group commit), written with plain
 * positional writes: they are in the page cache before the data they announce is issued, so a
 * crash of the daemon cannot lose them; power loss is covered by the intent record instead.
 * Entries are deleted by the watermark each later block carries, never by rewriting.
 *
 * <p>The ring never overwrites a block that still holds a live entry: the caller (the forker's
 * committer) checks {@link #slotMaxTag} against the watermark before writing.
 */
public final class TagJournal {
    private final Store store;
    private final long offset;
    private final int blocks;
    private final UUID volume;
    private final long[] slotMaxTag;
    private long nextSeq;
    private final ByteBuffer buf = ByteBuffer.allocateDirect(TagJournalBlock.SIZE);
    private final CRC32C crc = new CRC32C();
    /** The ring mapped shared, when the store can: appends are memory copies (see Store.map). */
    private final java.nio.MappedByteBuffer mapped;

    public TagJournal(Leg leg, TagTable scanned) {
        Superblock sb = leg.superblock();
        this.store = leg.store();
        this.offset = sb.journalOffset;
        this.blocks = sb.journalBlocks;
        this.volume = sb.volumeUuid;
        this.slotMaxTag = new long[blocks];
        // live entries of the scan are resolved by recovery before any new write: nothing to protect
        this.nextSeq = scanned.nextBlockSeq;
        java.nio.MappedByteBuffer m = null;
        try {
            m = store.map(offset, (long) blocks * TagJournalBlock.SIZE);
        } catch (IOException | UnsupportedOperationException e) {
            // fall back to positional writes
        }
        this.mapped = m;
    }

    /** True when appends go through a shared memory mapping. */
    public boolean mapped() {
        return mapped != null;
    }

    public int ringBlocks() {
        return blocks;
    }

    /** The highest tag held by the ring slot the next write goes to (0 if none). */
    public synchronized long nextSlotMaxTag() {
        return slotMaxTag[(int) (nextSeq % blocks)];
    }

    /** Appends one block; returns its sequence number. Thread-safe, but the committer is the only writer. */
    public synchronized long append(int hostId, long watermark, List<TagRecord> records) throws IOException {
        int n = records.size();
        TagJournalBlock.encodeHeader(buf, hostId, nextSeq, watermark, volume, n);
        long max = 0;
        for (int i = 0; i < n; i++) {
            TagRecord r = records.get(i);
            TagJournalBlock.encodeRecord(buf, i, r.tag(), r.objectId(), r.startBlock(), r.blockCount());
            max = Math.max(max, r.tag());
        }
        return put(n, max);
    }

    /**
     * {@link #append} of a block holding the one record (tag, objectId, startBlock, blockCount):
     * the same bytes, without a record or a list (the forker's per-write path).
     */
    public synchronized long appendOne(int hostId, long watermark, long tag, int objectId, long startBlock, long blockCount)
            throws IOException {
        TagJournalBlock.encodeHeader(buf, hostId, nextSeq, watermark, volume, 1);
        TagJournalBlock.encodeRecord(buf, 0, tag, objectId, startBlock, blockCount);
        return put(1, Math.max(0, tag));
    }

    /** {@link #append} of a block with no records: it carries the watermark only. */
    public synchronized long appendWatermark(int hostId, long watermark) throws IOException {
        TagJournalBlock.encodeHeader(buf, hostId, nextSeq, watermark, volume, 0);
        return put(0, 0);
    }

    /** Seals the block of {@code n} records encoded in {@code buf} and writes it into its ring slot. */
    private long put(int n, long maxTag) throws IOException {
        long seq = nextSeq;
        TagJournalBlock.seal(buf, n, crc);
        int slot = (int) (seq % blocks);
        if (mapped != null) {
            // in the page cache when put returns: a daemon crash after the data write cannot lose it.
            // Only the used bytes and the CRC: the rest of the slot is outside the block.
            int at = slot * TagJournalBlock.SIZE;
            mapped.put(at, buf, 0, TagJournalBlock.usedBytes(n));
            mapped.put(at + TagJournalBlock.OFF_CRC, buf, TagJournalBlock.OFF_CRC, 4);
        } else {
            store.write(offset + (long) slot * TagJournalBlock.SIZE, buf, false);
        }
        slotMaxTag[slot] = maxTag;
        nextSeq = seq + 1;
        return seq;
    }

    /** Reads the whole ring back: the live entries and watermarks. */
    public static TagTable scan(Leg leg) throws IOException {
        Superblock sb = leg.superblock();
        TagTable t = new TagTable();
        int n = sb.journalBlocks;
        int chunk = 256;
        ByteBuffer b = ByteBuffer.allocateDirect(chunk * TagJournalBlock.SIZE);
        List<TagJournalBlock> found = new java.util.ArrayList<>();
        for (int i = 0; i < n; i += chunk) {
            int c = Math.min(chunk, n - i);
            b.clear().limit(c * TagJournalBlock.SIZE);
            leg.store().read(sb.journalOffset + (long) i * TagJournalBlock.SIZE, b);
            for (int j = 0; j < c; j++) {
                TagJournalBlock blk = TagJournalBlock.decode(b.duplicate().position(j * TagJournalBlock.SIZE)
                        .limit((j + 1) * TagJournalBlock.SIZE), sb.volumeUuid);
                if (blk != null && blk.seq % n == i + j) {
                    found.add(blk);
                }
            }
        }
        for (TagJournalBlock blk : found) {
            t.validBlocks++;
            t.nextBlockSeq = Math.max(t.nextBlockSeq, blk.seq + 1);
            t.watermarks.merge(blk.hostId, blk.watermark, Math::max);
            t.maxTag.merge(blk.hostId, blk.watermark, Math::max);
            for (TagRecord r : blk.records) {
                t.maxTag.merge(Tag.host(r.tag()), r.tag(), Math::max);
            }
        }
        for (TagJournalBlock blk : found) {
            for (TagRecord r : blk.records) {
                if (r.tag() > t.watermark(Tag.host(r.tag()))) {
                    t.live.put(r.tag(), r);
                }
            }
        }
        return t;
    }
}
