package org.ublkmirror.tags;

import org.junit.jupiter.api.Test;
import org.ublkmirror.leg.FaultyStore;
import org.ublkmirror.leg.Leg;
import org.ublkmirror.leg.Role;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

class TagJournalTest {
    static final UUID VOL = new UUID(0xaaL, 0xbbL);

    @Test
    void tagPacksHostAndSequence() {
        long t = Tag.of(5, 123456789L);
        assertEquals(5, Tag.host(t));
        assertEquals(123456789L, Tag.seq(t));
        assertEquals("5:123456789", Tag.format(t));
        assertThrows(IllegalArgumentException.class, () -> Tag.of(1 << 16, 1));
    }

    @Test
    void pinsTheBytes() {
        TagJournalBlock b = new TagJournalBlock(1, 2, Tag.of(1, 9), VOL, List.of(new TagRecord(Tag.of(1, 10), 0, 5, 3)));
        ByteBuffer buf = b.encodeInto(ByteBuffer.allocateDirect(TagJournalBlock.SIZE));
        byte[] head = new byte[76];
        buf.get(0, head);
        assertEquals("554d5441474a3031" + "0001" + "0001" + "00000001" + "0000000000000002" + "0001000000000009"
                        + "00000000000000aa00000000000000bb"
                        + "000100000000000a" + "00000000" + "0000000000000005" + "0000000000000003",
                HexFormat.of().formatHex(head));
        assertEquals(144, TagJournalBlock.MAX_RECORDS);
    }

    @Test
    void tornOrForeignBlocksAreIgnored() {
        TagJournalBlock b = new TagJournalBlock(1, 2, 0, VOL, List.of(new TagRecord(Tag.of(1, 10), 0, 5, 3)));
        ByteBuffer buf = b.encodeInto(ByteBuffer.allocate(TagJournalBlock.SIZE));
        assertNotNull(TagJournalBlock.decode(buf, VOL));
        assertNull(TagJournalBlock.decode(buf, new UUID(1, 2)));
        for (int pos = 0; pos < b.usedBytes(); pos++) {
            ByteBuffer c = ByteBuffer.allocate(TagJournalBlock.SIZE);
            c.put(buf.duplicate()).flip();
            c.put(pos, (byte) (c.get(pos) ^ 0x40));
            assertNull(TagJournalBlock.decode(c, VOL), "flip at " + pos);
        }
        for (int pos = 4092; pos < 4096; pos++) {
            ByteBuffer c = ByteBuffer.allocate(TagJournalBlock.SIZE);
            c.put(buf.duplicate()).flip();
            c.put(pos, (byte) (c.get(pos) ^ 0x40));
            assertNull(TagJournalBlock.decode(c, VOL), "flip in the CRC at " + pos);
        }
        // bytes past the records are not part of the block (an older lap's records may sit there)
        ByteBuffer c = ByteBuffer.allocate(TagJournalBlock.SIZE);
        c.put(buf.duplicate()).flip();
        c.put(4000, (byte) 0x77);
        assertNotNull(TagJournalBlock.decode(c, VOL));
    }

    @Test
    void scanFindsLiveEntriesAboveTheWatermark() throws Exception {
        FaultyStore st = new FaultyStore("p", 4 << 20);
        Leg leg = Leg.create(st, new Leg.Spec("t", VOL, Role.PRIMARY, 4096, 64, 8, 8, 1));
        TagTable empty = TagJournal.scan(leg);
        assertEquals(0, empty.validBlocks);
        TagJournal j = new TagJournal(leg, empty);
        j.append(1, 0, List.of(new TagRecord(Tag.of(1, 1), 0, 0, 1), new TagRecord(Tag.of(1, 2), 0, 4, 2)));
        j.append(1, Tag.of(1, 1), List.of(new TagRecord(Tag.of(1, 3), 0, 9, 1)));
        TagTable t = TagJournal.scan(leg);
        assertEquals(2, t.validBlocks);
        assertEquals(List.of(Tag.of(1, 2), Tag.of(1, 3)), new ArrayList<>(t.live.keySet()));
        assertEquals(Tag.of(1, 1), t.watermark(1));
        assertEquals(Tag.of(1, 3), t.maxTag.get(1));
        assertEquals(3, t.nextBlockSeq);
    }

    @Test
    void ringWrapsAndKeepsPositions() throws Exception {
        FaultyStore st = new FaultyStore("p", 4 << 20);
        Leg leg = Leg.create(st, new Leg.Spec("t", VOL, Role.PRIMARY, 4096, 64, 4, 8, 1));
        TagJournal j = new TagJournal(leg, TagJournal.scan(leg));
        for (int i = 1; i <= 10; i++) {
            j.append(1, Tag.of(1, i - 1), List.of(new TagRecord(Tag.of(1, i), 0, i, 1)));
        }
        TagTable t = TagJournal.scan(leg);
        assertEquals(4, t.validBlocks);
        assertEquals(11, t.nextBlockSeq);
        assertEquals(List.of(Tag.of(1, 10)), new ArrayList<>(t.live.keySet()));
    }

    @Test
    void windowWatermarkFollowsTheOldestOutstandingTag() {
        TagWindow w = new TagWindow(2, 100);
        long a = w.issue(), b = w.issue(), c = w.issue();
        assertEquals(Tag.of(2, 100), w.watermark());
        w.retire(b);
        assertEquals(Tag.of(2, 100), w.watermark());
        w.retire(a);
        assertEquals(b, w.watermark());
        w.retire(c);
        assertEquals(c, w.watermark());
    }

    /** appendOne and appendWatermark write what append writes for one record and for none: byte for byte. */
    @Test
    void singleRecordAppendsWriteTheSameBytesAsAppend(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        for (boolean mappedStore : new boolean[] {false, true}) {
            Leg a, b;
            if (mappedStore) {
                a = Leg.create(org.ublkmirror.leg.FileStore.createSparse(dir.resolve("a.img"), 4 << 20),
                        new Leg.Spec("a", VOL, Role.PRIMARY, 4096, 64, 4, 8, 1));
                b = Leg.create(org.ublkmirror.leg.FileStore.createSparse(dir.resolve("b.img"), 4 << 20),
                        new Leg.Spec("a", VOL, Role.PRIMARY, 4096, 64, 4, 8, 1));
            } else {
                a = Leg.create(new FaultyStore("a", 4 << 20), new Leg.Spec("a", VOL, Role.PRIMARY, 4096, 64, 4, 8, 1));
                b = Leg.create(new FaultyStore("b", 4 << 20), new Leg.Spec("a", VOL, Role.PRIMARY, 4096, 64, 4, 8, 1));
            }
            TagJournal ja = new TagJournal(a, TagJournal.scan(a)), jb = new TagJournal(b, TagJournal.scan(b));
            assertEquals(mappedStore, ja.mapped());
            // a lap with several records per block first, so later blocks land on slots holding older bytes
            for (int i = 0; i < 4; i++) {
                List<TagRecord> many = new ArrayList<>();
                for (int k = 0; k < 3 + i; k++) many.add(new TagRecord(Tag.of(1, 10 * i + k + 1), k, 100 * i + k, k + 1));
                ja.append(1, Tag.of(1, 10 * i), many);
                jb.append(1, Tag.of(1, 10 * i), many);
            }
            for (int i = 0; i < 9; i++) {
                long t = Tag.of(1, 100 + i), wm = Tag.of(1, 97 + i);
                if (i % 3 == 2) {
                    assertEquals(ja.append(1, wm, List.of()), jb.appendWatermark(1, wm));
                } else {
                    assertEquals(ja.append(1, wm, List.of(new TagRecord(t, i, 7L * i, i + 1))),
                            jb.appendOne(1, wm, t, i, 7L * i, i + 1));
                }
                assertEquals(ja.nextSlotMaxTag(), jb.nextSlotMaxTag());
            }
            ByteBuffer ra = ByteBuffer.allocate(4 * TagJournalBlock.SIZE), rb = ByteBuffer.allocate(4 * TagJournalBlock.SIZE);
            a.store().read(a.superblock().journalOffset, ra);
            b.store().read(b.superblock().journalOffset, rb);
            assertArrayEquals(ra.array(), rb.array(), mappedStore ? "mapped" : "positional");
            TagTable ta = TagJournal.scan(a), tb = TagJournal.scan(b);
            assertEquals(ta.live, tb.live);
            assertEquals(ta.watermarks, tb.watermarks);
            assertEquals(Tag.of(1, 107), tb.maxTag.get(1));
            assertEquals(Tag.of(1, 105), tb.watermark(1));
            assertEquals(List.of(Tag.of(1, 106), Tag.of(1, 107)), new ArrayList<>(tb.live.keySet()));
            a.store().close();
            b.store().close();
        }
    }
}
