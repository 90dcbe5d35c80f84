package org.ublkmirror.frontend.ublk;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.frontend.KernelProbe;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The ublk frontend's host-side parts: feature names, the refusal text, the run-dir record, the shim's loading. */
class UblkFrontendTest {
    @TempDir
    Path dir;

    @Test
    void schedulerLineAndAMissingDisk() {
        assertEquals("mq-deadline", UblkDevice.activeScheduler("none [mq-deadline] kyber bfq\n"));
        assertEquals("none", UblkDevice.activeScheduler("[none] mq-deadline"));
        assertEquals("none", UblkDevice.activeScheduler("none"));
        // no such disk here (no ublk on the host): not fatal, and the note says what was not done
        String r = UblkDevice.setScheduler(987_654, null);
        assertTrue(r.startsWith("? (unchanged: cannot set none in /sys/block/ublkb987654/queue/scheduler"), r);
        assertTrue(UblkDevice.setScheduler(987_654, "kyber").contains("cannot set kyber"));
    }

    @Test
    void featureMaskDecodesByName() {
        // what the 6.12 guest kernel answers to GET_FEATURES
        assertEquals(List.of("URING_CMD_COMP_IN_TASK", "NEED_GET_DATA", "USER_RECOVERY", "USER_RECOVERY_REISSUE",
                "UNPRIVILEGED_DEV", "CMD_IOCTL_ENCODE", "USER_COPY", "ZONED"), UblkFeatures.names(0x1fe));
        assertEquals(List.of("USER_RECOVERY", "BIT_40"), UblkFeatures.names((1L << 3) | (1L << 40)));
        // what the 7.3 guest kernel answers (tests/vm, trixie-backports): every bit has a name
        List<String> k73 = UblkFeatures.names(0x1fffff);
        assertEquals(21, k73.size());
        assertTrue(k73.stream().noneMatch(n -> n.startsWith("BIT_")), k73.toString());
        assertEquals(List.of("AUTO_BUF_REG", "SHMEM_ZC", "IO_DESC_SIZE"),
                List.of(k73.get(11), k73.get(19), k73.get(20)));
    }

    @Test
    void kernelVersionSaysWhatItOffers() {
        long v60 = UblkFeatures.forKernel(6, 0), v61 = UblkFeatures.forKernel(6, 1), v64 = UblkFeatures.forKernel(6, 4);
        assertEquals(0, v60 & UblkFeatures.USER_RECOVERY, "6.0 has no user recovery");
        assertTrue((v61 & UblkFeatures.USER_RECOVERY) != 0);
        assertEquals(0, v61 & UblkFeatures.CMD_IOCTL_ENCODE, "6.1 speaks only the legacy encoding");
        assertTrue((v64 & UblkFeatures.CMD_IOCTL_ENCODE) != 0);
        assertEquals(0x1feL, UblkFeatures.forKernel(6, 12) & 0x1ff, "6.12 as its GET_FEATURES answers");
    }

    private Path fakeRoot(String release, boolean control, boolean moduleAvailable) throws IOException {
        Path r = dir.resolve(release + control + moduleAvailable);
        Files.createDirectories(r.resolve("proc/sys/kernel"));
        Files.writeString(r.resolve("proc/sys/kernel/osrelease"), release + "\n");
        Files.writeString(r.resolve("proc/sys/kernel/io_uring_disabled"), "0\n");
        Files.createDirectories(r.resolve("dev"));
        if (control) Files.createFile(r.resolve("dev/ublk-control"));
        Path mods = r.resolve("lib/modules/" + release);
        Files.createDirectories(mods);
        Files.writeString(mods.resolve("modules.dep"), moduleAvailable
                ? "kernel/drivers/block/ublk_drv.ko.xz:\n" : "kernel/drivers/block/loop.ko.xz:\n");
        return r;
    }

    @Test
    void missingUblkIsOneLineSayingWhatToDo() throws IOException {
        String old = new UblkFrontendFactory(new KernelProbe(fakeRoot("5.15.0-1-amd64", false, false))).unavailable();
        assertNotNull(old);
        assertTrue(old.contains("predates ublk (6.0)") && old.contains("--frontend fuse"), old);
        String notLoaded = new UblkFrontendFactory(new KernelProbe(fakeRoot("6.12.1-amd64", false, true))).unavailable();
        assertTrue(notLoaded.contains("modprobe ublk_drv") && notLoaded.contains("6.0+") && notLoaded.contains("--frontend fuse"), notLoaded);
        String absent = new UblkFrontendFactory(new KernelProbe(fakeRoot("6.1.0-18-amd64", false, false))).unavailable();
        assertTrue(absent.contains("has no ublk_drv") && absent.contains("--frontend fuse"), absent);
        for (String s : List.of(old, notLoaded, absent)) assertFalse(s.contains("\n"), "one line: " + s);
    }

    @Test
    void runDirRecordRoundTrips() throws IOException {
        Path p = dir.resolve("m.ublk");
        new UblkFrontendFactory.Record(7, 1L << 30).write(p);
        assertEquals("dev=7 size=1073741824\n", Files.readString(p));
        assertEquals(new UblkFrontendFactory.Record(7, 1L << 30), UblkFrontendFactory.Record.read(p).orElseThrow());
        Files.writeString(p, "garbage");
        assertTrue(UblkFrontendFactory.Record.read(p).isEmpty(), "a torn record is not trusted");
    }

    @Test
    void shimLoadsAndReportsAMissingControlDevice() {
        // make build (and make test) build native/out/libublkmirror.so first
        UblkNative n = UblkNative.get();
        assertEquals(UblkNative.DESC_SIZE, n.ubm_desc_size());
        if (!Files.exists(Path.of("/dev/ublk-control"))) {
            IOException e = assertThrows(IOException.class, UblkCtrl::open);
            assertTrue(e.getMessage().contains("/dev/ublk-control") && e.getMessage().contains("modprobe ublk_drv"), e.getMessage());
        } else {
            try (UblkCtrl c = UblkCtrl.open()) {
                assertTrue(c.features() != 0);
            } catch (IOException e) {
                throw new AssertionError("ublk present but unusable: " + e.getMessage(), e);
            }
        }
    }

    @Test
    void optionsRefuseWhatCannotWork() {
        UblkDevice.Options d = UblkDevice.Options.defaults();
        assertEquals(1, d.queues());
        assertEquals(64, d.depth());
        IllegalArgumentException big = assertThrows(IllegalArgumentException.class, () -> d.withQueues(32).withDepth(4096));
        assertTrue(big.getMessage().contains("lower --depth, --queues or --max-io"), big.getMessage());
        assertThrows(IllegalArgumentException.class, () -> d.withDepth(0));
        IllegalArgumentException odd = assertThrows(IllegalArgumentException.class, () -> d.withMaxIo(768 << 10));
        assertEquals("--max-io must be a power of two, 4 KiB..1 MiB: 786432", odd.getMessage());
        assertThrows(IllegalArgumentException.class, () -> d.withMaxIo(2 << 20));
    }

    @Test
    void theLargestRequestIsOneMebibyteWhereTheBuffersFit() {
        assertEquals(1 << 20, UblkDevice.Options.defaults().maxIoBytes());
        assertEquals(1 << 20, UblkDevice.Options.of(4, 64).maxIoBytes(), "4 x 64 x 1 MiB = 256 MiB fits");
        assertEquals(512 << 10, UblkDevice.Options.of(8, 64).maxIoBytes(), "8 queues: 512 KiB buffers");
        assertEquals(4096, UblkDevice.Options.of(32, 2048).maxIoBytes());
        assertThrows(IllegalArgumentException.class, () -> UblkDevice.Options.of(32, 4096), "not even 4 KiB buffers fit");
        // a given --max-io is kept, and one that does not fit is refused, not shrunk
        assertEquals(64 << 10, UblkDevice.Options.of(1, 64).withMaxIo(64 << 10).maxIoBytes());
        assertThrows(IllegalArgumentException.class, () -> UblkDevice.Options.of(8, 64).withMaxIo(1 << 20));
    }
}
