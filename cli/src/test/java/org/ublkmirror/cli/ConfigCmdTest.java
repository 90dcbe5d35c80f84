package org.ublkmirror.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.link.LinkConfig;
import org.ublkmirror.link.ResyncPolicy;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.*;

/** The link settings from the operator's side: create takes them, config shows and changes them, bad values change nothing. */
class ConfigCmdTest {
    @TempDir
    Path dir;
    Path conf;

    record Run(int code, String out, String err) {
    }

    Run ctl(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        PrintStream oldOut = System.out, oldErr = System.err;
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        List<String> a = new ArrayList<>(List.of(args));
        a.addAll(List.of("--conf-dir", dir.resolve("conf").toString()));
        int code;
        try {
            code = Mirrorctl.commandLine().setErr(new java.io.PrintWriter(System.err, true)).execute(a.toArray(String[]::new));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
        conf = dir.resolve("conf");
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    Path p() {
        return dir.resolve("p.img");
    }

    Path s() {
        return dir.resolve("s.img");
    }

    Run create(String name, Path pr, Path se, String... extra) {
        List<String> a = new ArrayList<>(List.of("create", name, "--primary", pr.toString(), "--secondary", se.toString()));
        a.addAll(List.of(extra));
        return ctl(a.toArray(String[]::new));
    }
    @Test
    void createStoresThePolicyAndConfigChangesIt() throws Exception {
        Run r = create("m", p(), s(), "--size", "4M", "--resync-policy", "manual", "--io-timeout", "750ms", "--retry-max", "5s");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("resync policy manual"), r.out());
        LinkConfig c = LinkConfig.load(conf, "m");
        assertEquals(ResyncPolicy.MANUAL, c.policy());
        assertEquals(Duration.ofMillis(750), c.ioTimeout());
        assertEquals(Duration.ofSeconds(5), c.retryMax());

        r = ctl("config", "m", "--json");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("\"resync_policy\": \"manual\"") && r.out().contains("\"changed\": false"), r.out());

        r = ctl("config", "m", "--resync-policy", "auto", "--heartbeat", "0");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("resync policy auto") && r.out().contains("used from the next 'mirrorctl start'"), r.out());
        assertEquals(ResyncPolicy.AUTO, LinkConfig.load(conf, "m").policy());
        assertEquals(Duration.ZERO, LinkConfig.load(conf, "m").heartbeat());
        assertEquals(Duration.ofMillis(750), LinkConfig.load(conf, "m").ioTimeout(), "unset options keep their values");

        assertEquals(16, LinkConfig.load(conf, "m").resyncWindow(), "the default window");
        r = ctl("config", "m", "--resync-window", "24");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("resync window 24"), r.out());
        assertEquals(24, LinkConfig.load(conf, "m").resyncWindow());
        assertTrue(ctl("config", "m", "--json").out().contains("\"resync_window\": 24"));

        assertTrue(LinkConfig.load(conf, "m").resyncAdaptive(), "the window is adaptive by default");
        assertTrue(r.out().contains("resync window 24 (adaptive)"), r.out());
        r = ctl("config", "m", "--resync-window-mode", "fixed");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("resync window 24 (fixed)"), r.out());
        assertFalse(LinkConfig.load(conf, "m").resyncAdaptive());
        assertEquals(24, LinkConfig.load(conf, "m").resyncWindow(), "the window kept");
        assertTrue(ctl("config", "m", "--json").out().contains("\"resync_window_mode\": \"fixed\""));
        assertTrue(ctl("config", "m", "--resync-window-mode", "Adaptive").out().contains("(adaptive)"));
    }

    @Test
    void badValuesAreOneLineAndChangeNothing() throws Exception {
        Run r = create("m", p(), s(), "--size", "4M", "--resync-policy", "sometimes");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertEquals("mirrorctl: resync policy 'sometimes' is unknown; use auto or manual", r.err().trim());
        assertFalse(Files.exists(p()) || Files.exists(s()), "a refused create leaves no leg file behind");
        assertFalse(Files.exists(LinkConfig.file(conf, "m")));

        assertEquals(0, create("m", p(), s(), "--size", "4M").code());
        String before = Files.readString(LinkConfig.file(conf, "m"));
        r = ctl("config", "m", "--retry-min", "10s", "--retry-max", "1s");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertTrue(r.err().trim().startsWith("mirrorctl: --retry-max 1000 ms is below --retry-min 10000 ms"), r.err());
        r = ctl("config", "m", "--io-timeout", "soon");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertEquals("mirrorctl: --io-timeout 'soon' is not a duration; write it like 500ms, 2s, 1m", r.err().trim());
        r = ctl("config", "m", "--resync-window", "0");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertEquals("mirrorctl: --resync-window 0 is out of range; use 1..64 copies in flight", r.err().trim());
        r = ctl("config", "m", "--resync-window", "many");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertEquals("mirrorctl: --resync-window 'many' is not a number; give 1..64", r.err().trim());
        r = ctl("config", "m", "--resync-window-mode", "auto");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
        assertEquals("mirrorctl: --resync-window-mode 'auto' is not a mode; use adaptive or fixed", r.err().trim());
        assertEquals(before, Files.readString(LinkConfig.file(conf, "m")), "nothing saved");
        r = ctl("config", "nosuch");
        assertEquals(Mirrorctl.BAD_INPUT, r.code());
    }
}
