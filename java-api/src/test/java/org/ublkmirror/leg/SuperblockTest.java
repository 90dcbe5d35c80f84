package org.ublkmirror.leg;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.HexFormat;
import java.util.Random;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

class SuperblockTest {

    static Superblock sample() {
        Superblock s = new Superblock();
        s.seq = 7;
        s.volumeUuid = new UUID(0x0102030405060708L, 0x090a0b0c0d0e0f10L);
        s.legUuid = new UUID(0x1112131415161718L, 0x191a1b1c1d1e1f20L);
        s.role = Role.SECONDARY;
        s.blockSize = 4096;
        s.dataOffset = 1 << 20;
        s.dataBlocks = 256;
        s.journalOffset = 16384;
        s.journalBlocks = 16;
        s.flags = Superblock.FLAG_CLEAN;
        s.intentOffset = 8192;
        s.regionBlocks = 8;
        s.hostId = 3;
        s.trackOffset = 16384 + 16 * 4096;
        s.trackSlotBytes = 8192;
        s.currentGen = 0x2222;
        s.bitmapGen = 0x1111;
        s.lastTag = 99;
        s.bootId = new UUID(5, 6);
        s.createdMillis = 1_700_000_000_000L;
        s.name = "db0";
        s.objects = new Superblock.StorageObject[] {new Superblock.StorageObject(0, 0, 0, 200, 256)};
        return s;
    }

    @Test
    void pinsTheBytes() {
        ByteBuffer b = sample().encode();
        byte[] head = new byte[64];
        b.get(0, head);
        assertEquals("554d495253423031" + "00000001" + "000004f8" + "0000000000000007"
                        + "0102030405060708090a0b0c0d0e0f10" + "1112131415161718191a1b1c1d1e1f20"
                        + "00000002" + "00001000",
                HexFormat.of().formatHex(head));
        assertEquals(0x0000000000001111L, b.getLong(136));
        assertEquals(200, b.getLong(248 + 16));
        assertEquals(Superblock.OFF_CRC, 1272);
        assertEquals(Crc.of(b, 0, 1272), b.getInt(1272));
        // and the same object gives the same bytes every time
        assertEquals(b, sample().encode());
    }

    @Test
    void roundTrips() throws Exception {
        Superblock d = Superblock.decode(sample().encode(), "t");
        assertEquals(sample().volumeUuid, d.volumeUuid);
        assertEquals(Role.SECONDARY, d.role);
        assertEquals("db0", d.name);
        assertEquals(0x1111, d.bitmapGen);
        assertEquals(new Superblock.StorageObject(0, 0, 0, 200, 256), d.object(0));
        assertTrue(d.clean());
    }

    @Test
    void everyFlippedByteIsDetected() {
        ByteBuffer good = sample().encode();
        Random r = new Random(1);
        for (int i = 0; i < 300; i++) {
            ByteBuffer b = ByteBuffer.allocate(Superblock.SLOT_SIZE);
            b.put(good.duplicate()).flip();
            int pos = r.nextInt(Superblock.OFF_CRC + 4);
            b.put(pos, (byte) (b.get(pos) ^ (1 + r.nextInt(255))));
            assertThrows(MetadataException.class, () -> Superblock.decode(b, "t"), "flip at " + pos);
        }
    }

    @Test
    void futureVersionIsNamed() {
        ByteBuffer b = sample().encode();
        b.putInt(8, 2);
        MetadataException e = assertThrows(MetadataException.class, () -> Superblock.decode(b, "leg"));
        assertTrue(e.getMessage().contains("version 2"), e.getMessage());
    }
}
