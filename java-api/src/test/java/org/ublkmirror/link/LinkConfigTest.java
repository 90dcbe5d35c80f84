package org.ublkmirror.link;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class LinkConfigTest {
    @TempDir
    Path dir;

    @Test
    void savedSettingsReadBackAndAMissingFileMeansDefaults() throws Exception {
        assertEquals(LinkConfig.DEFAULTS, LinkConfig.load(dir, "m"));
        assertEquals(ResyncPolicy.AUTO, LinkConfig.DEFAULTS.policy());
        LinkConfig c = LinkConfig.DEFAULTS.withPolicy(ResyncPolicy.MANUAL).withIoTimeout(Duration.ofMillis(750))
                .withRetry(Duration.ofMillis(200), Duration.ofSeconds(5)).withResyncRate(50 << 20).withHeartbeat(Duration.ZERO)
                .withResyncWindow(32).withResyncAdaptive(false);
        c.save(dir, "m");
        assertEquals(c, LinkConfig.load(dir, "m"));
        assertTrue(Files.readString(LinkConfig.file(dir, "m")).contains("resync-policy=manual"));
        assertEquals(c.withPolicy(ResyncPolicy.AUTO), c.merge(Map.of("resync_policy", "auto")));
        assertTrue(Files.readString(LinkConfig.file(dir, "m")).contains("resync-window-mode=fixed"));
        assertTrue(LinkConfig.DEFAULTS.resyncAdaptive(), "adaptive by default");
        assertTrue(c.merge(Map.of("resync_window_mode", "adaptive")).resyncAdaptive());
        // a file written before the mode existed: adaptive
        Files.writeString(LinkConfig.file(dir, "old"), "resync-policy=manual\nresync-window=8\n");
        assertTrue(LinkConfig.load(dir, "old").resyncAdaptive());
        assertEquals(8, LinkConfig.load(dir, "old").resyncWindow());
    }

    @Test
    void badValuesAreOneClearLine() throws Exception {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ResyncPolicy.parse("sometimes"));
        assertEquals("resync policy 'sometimes' is unknown; use auto or manual", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> LinkConfig.DEFAULTS.withIoTimeout(Duration.ZERO));
        e = assertThrows(IllegalArgumentException.class, () -> LinkConfig.DEFAULTS.withResyncWindow(0));
        assertEquals("--resync-window 0 is out of range; use 1..64 copies in flight", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> LinkConfig.DEFAULTS.merge(java.util.Map.of("resync_window", "65")));
        assertEquals(16, LinkConfig.DEFAULTS.resyncWindow(), "the default window");
        assertEquals(3, LinkConfig.DEFAULTS.merge(java.util.Map.of("resync_window", "3")).resyncWindow());
        e = assertThrows(IllegalArgumentException.class, () -> LinkConfig.DEFAULTS.withRetry(Duration.ofSeconds(5), Duration.ofSeconds(1)));
        assertTrue(e.getMessage().contains("--retry-max 1000 ms is below --retry-min 5000 ms"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> LinkConfig.parseWindowMode("slow"));
        assertEquals("--resync-window-mode 'slow' is not a mode; use adaptive or fixed", e.getMessage());
        Files.writeString(LinkConfig.file(dir, "bad"), "resync-policy=never\n");
        e = assertThrows(IllegalArgumentException.class, () -> LinkConfig.load(dir, "bad"));
        assertTrue(e.getMessage().contains("bad.link.conf: resync policy 'never' is unknown"), e.getMessage());
    }
}
