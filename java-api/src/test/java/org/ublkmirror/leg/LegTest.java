package org.ublkmirror.leg;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.*;

class LegTest {
    static Leg.Spec spec(Role role, UUID vol) {
        return new Leg.Spec("t", vol, role, 4096, 64, 16, 8, 42);
    }

    @Test
    void tornSuperblockUpdateFallsBackToTheOtherSlot() throws Exception {
        FaultyStore st = new FaultyStore("p", 4 << 20);
        Leg leg = Leg.create(st, spec(Role.PRIMARY, UUID.randomUUID()));
        leg.updateSuperblock(sb -> sb.currentGen = 77);
        long seq = leg.superblock().seq;
        // the next update is torn: its slot holds garbage
        long slot = ((seq + 1) & 1) == 1 ? Leg.SB_A : Leg.SB_B;
        st.write(slot + 100, ByteBuffer.wrap(new byte[] {1, 2, 3}), false);
        Leg again = Leg.open(st);
        assertEquals(77, again.superblock().currentGen);
        assertEquals(seq, again.superblock().seq);
    }

    @Test
    void bothSlotsCorruptIsAClearError() throws Exception {
        FaultyStore st = new FaultyStore("p", 4 << 20);
        Leg.create(st, spec(Role.PRIMARY, UUID.randomUUID()));
        byte[] img = st.image();
        st.write(Leg.SB_A + 40, ByteBuffer.wrap(new byte[] {(byte) (img[(int) Leg.SB_A + 40] ^ 0x5a)}), false);
        st.write(Leg.SB_B + 40, ByteBuffer.wrap(new byte[] {(byte) (img[(int) Leg.SB_B + 40] ^ 0x5a)}), false);
        MetadataException e = assertThrows(MetadataException.class, () -> Leg.open(st));
        assertTrue(e.getMessage().contains("both superblock copies are corrupt"), e.getMessage());
    }

    @Test
    void emptyStoreIsNotALeg() {
        FaultyStore st = new FaultyStore("p", 4 << 20);
        MetadataException e = assertThrows(MetadataException.class, () -> Leg.open(st));
        assertTrue(e.getMessage().contains("run 'mirrorctl create' first"), e.getMessage());
    }

    @Test
    void truncatedLegIsNamed() throws Exception {
        FaultyStore big = new FaultyStore("p", 4 << 20);
        Leg.create(big, spec(Role.PRIMARY, UUID.randomUUID()));
        byte[] img = big.image();
        FaultyStore small = new FaultyStore("p", 1 << 20);
        small.write(0, ByteBuffer.wrap(img, 0, 1 << 20), false);
        MetadataException e = assertThrows(MetadataException.class, () -> Leg.open(small));
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
    }

    @Test
    void probeSeesDataAndMetadata() throws Exception {
        FaultyStore st = new FaultyStore("p", 4 << 20);
        assertNull(Leg.probeContent(st));
        st.write(1024, ByteBuffer.wrap(new byte[] {0x53, (byte) 0xef}), false); // an ext4 magic, say
        assertEquals("data", Leg.probeContent(st));
        FaultyStore m = new FaultyStore("m", 4 << 20);
        Leg.create(m, spec(Role.PRIMARY, UUID.randomUUID()));
        assertEquals("ublk-mirror metadata", Leg.probeContent(m));
    }

    @Test
    void dataAreaIsAfterMetadataAndAligned() throws Exception {
        FaultyStore st = new FaultyStore("p", 4 << 20);
        Leg leg = Leg.create(st, spec(Role.PRIMARY, UUID.randomUUID()));
        Superblock sb = leg.superblock();
        assertEquals(0, sb.dataOffset % (1 << 20));
        assertTrue(sb.trackOffset + 2 * sb.trackSlotBytes <= sb.dataOffset);
        ByteBuffer b = ByteBuffer.allocate(4096);
        b.put(0, (byte) 7);
        leg.data().write(0, b, false);
        assertEquals(7, st.image()[(int) sb.dataOffset]);
    }
}
