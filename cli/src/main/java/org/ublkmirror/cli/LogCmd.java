package org.ublkmirror.cli;

import org.ublkmirror.logship.ReceiverClient;
import org.ublkmirror.logship.ReceiverStore;
import org.ublkmirror.logship.ShipTarget;
import org.ublkmirror.mirror.Inspect;
import org.ublkmirror.mirror.MirrorConfig;
import org.ublkmirror.mirror.Reports;
import org.ublkmirror.track.TrackingLog;
import org.ublkmirror.track.TrackingLogFormat;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "log", description = {"The tracking log: block ranges written while the secondary was away, with their times.",
        "Reads the running daemon's log, else the primary leg's persisted copy, or with --shipped the copy at the second location.",
        "With --from HOST:PORT: the copy a log receiver holds, by NAME or --volume UUID (no configuration or primary needed); --list: what it holds."})
final class LogCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", arity = "0..1", paramLabel = "NAME", description = "The mirror (optional with --from and --volume or --list).")
    String name;

    @Option(names = "--from", paramLabel = "HOST:PORT", description = "Read from this log receiver ('mirrorctl log-receiver').")
    String from;

    @Option(names = "--volume", paramLabel = "UUID", description = "With --from: the mirror whose volume UUID this is (when its name or configuration is lost).")
    String volume;

    @Option(names = "--list", description = "With --from: list the logs the receiver holds.")
    boolean list;

    @Option(names = "--tls-keystore", paramLabel = "P12", description = "With --from: TLS, this host's certificate and key (PKCS#12).")
    Path tlsKeyStore;

    @Option(names = "--tls-truststore", paramLabel = "P12", description = "With --from: TLS, the receiver's certificate or its CA (PKCS#12).")
    Path tlsTrustStore;

    @Option(names = "--tls-password-file", paramLabel = "FILE", description = "With --from: the password of both PKCS#12 files (first line).")
    Path tlsPasswordFile;

    @Option(names = "--since", paramLabel = "TIME", description = "Only ranges written at or after TIME (10:02, 2026-11-21T10:02, -10m).")
    String since;

    @Option(names = "--until", paramLabel = "TIME", description = "Only ranges written at or before TIME.")
    String until;

    @Option(names = "--shipped", description = "Read the copy shipped to the mirror's --ship-dir, else to its --ship-to log receiver (works without the primary).")
    boolean shipped;

    @Option(names = "--json", description = "Machine-readable output.")
    boolean json;

    @Override
    @SuppressWarnings("unchecked")
    public Integer call() throws Exception {
        long now = System.currentTimeMillis();
        long from = since == null ? Long.MIN_VALUE : Units.parseTime(since, now);
        long to = until == null ? Long.MAX_VALUE : Units.parseTime(until, now);
        if (from > to) throw new IllegalArgumentException("--since is after --until; swap them");
        if (this.from == null && (volume != null || list || tlsKeyStore != null || tlsTrustStore != null || tlsPasswordFile != null)) {
            throw new IllegalArgumentException("--volume, --list and --tls-* read from a log receiver: give --from HOST:PORT");
        }
        if (this.from != null) return fromReceiver(from, to);
        if (name == null) throw new IllegalArgumentException("name the mirror (mirrorctl log NAME), or read a log receiver with --from HOST:PORT");
        MirrorConfig cfg = common.load(name);
        Map<String, Object> out = null;
        if (!shipped) {
            Map<String, String> args = new LinkedHashMap<>();
            args.put("since", Long.toString(from));
            args.put("until", Long.toString(to));
            out = Control.tryCall(cfg.name(), "log", args);
        }
        if (out == null) {
            TrackingLog log;
            if (shipped) {
                log = Inspect.shippedLog(cfg);
            } else {
                try (Inspect in = Inspect.open(cfg)) {
                    log = in.trackingLog();
                }
            }
            out = Reports.log(log, from, to, shipped ? "shipped" : "primary");
        }
        render(out);
        return 0;
    }

    /** Reads a log receiver: by name, by volume, or its listing. */
    private int fromReceiver(long since, long until) throws Exception {
        if (shipped) throw new IllegalArgumentException("--shipped and --from name two sources; give one");
        if (list && (name != null || volume != null)) throw new IllegalArgumentException("--list lists every log; give no NAME or --volume with it");
        if (!list && (name == null) == (volume == null)) {
            throw new IllegalArgumentException("with --from give the mirror's NAME or --volume UUID (one of them), or --list");
        }
        java.util.UUID vol = null;
        if (volume != null) {
            try {
                vol = java.util.UUID.fromString(volume);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--volume " + volume + " is not a UUID (mirrorctl status shows it, e.g. 0b6f3c1e-...)");
            }
        }
        ShipTarget target = new ShipTarget(from, tlsKeyStore, tlsTrustStore, tlsPasswordFile);
        if (!target.tls() && name != null) {
            // the mirror's own TLS settings, if its configuration is here
            try {
                MirrorConfig cfg = common.load(name);
                if (cfg.shipTo() != null && cfg.shipTo().tls()) {
                    target = new ShipTarget(from, cfg.shipTo().keyStore(), cfg.shipTo().trustStore(), cfg.shipTo().passwordFile());
                }
            } catch (java.io.IOException | IllegalArgumentException ignored) {
                // no configuration on this host: plain TCP unless --tls-* are given
            }
        }
        try (ReceiverClient c = target.client(ReceiverClient.Options.defaults())) {
            if (list) {
                List<Object> logs = new ArrayList<>();
                for (ReceiverStore.Entry e : c.list()) {
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("name", e.name());
                    m.put("volume", e.volume().toString());
                    m.put("sequence", e.sequence());
                    m.put("received", Units.time(e.receivedMillis()));
                    m.put("received_ms", e.receivedMillis());
                    m.put("dirty_blocks", e.dirtyBlocks());
                    m.put("record_bytes", (long) e.recordLength());
                    logs.add(m);
                }
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("receiver", c.address());
                out.put("logs", logs);
                if (json) {
                    System.out.println(Json.write(out));
                } else {
                    System.out.printf("log receiver %s: %d tracking log(s)%n", c.address(), logs.size());
                    if (!logs.isEmpty()) System.out.printf("  %-20s %-36s %-8s %-14s %s%n", "NAME", "VOLUME", "SEQ", "DIRTY BLOCKS", "RECEIVED");
                    for (Object o : logs) {
                        Map<?, ?> m = (Map<?, ?>) o;
                        System.out.printf("  %-20s %-36s %-8s %-14s %s%n", m.get("name"), m.get("volume"), m.get("sequence"), m.get("dirty_blocks"), m.get("received"));
                    }
                }
                return 0;
            }
            ReceiverClient.Fetched f = vol != null ? c.getByVolume(vol) : c.getByName(name);
            if (f == null) {
                throw new Mirrorctl.Failure(Mirrorctl.BAD_INPUT, "log receiver " + c.address() + " holds no tracking log of "
                        + (vol != null ? "volume " + vol : "mirror '" + name + "'") + " ('mirrorctl log --from " + from + " --list' shows what it holds)");
            }
            TrackingLog log = TrackingLogFormat.decode(f.record());
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("name", f.name());
            out.put("volume", log.volumeUuid().toString());
            out.put("sequence", log.sequence());
            out.put("received", Units.time(f.receivedMillis()));
            out.put("received_ms", f.receivedMillis());
            out.putAll(Reports.log(log, since, until, "log receiver " + c.address()));
            render(out);
            return 0;
        }
    }

    @SuppressWarnings("unchecked")
    private void render(Map<String, Object> out) {
        // the daemon sends times in ms; render them here, in this terminal's time zone
        for (Object o : (List<Object>) out.get("ranges")) {
            Map<String, Object> d = (Map<String, Object>) o;
            if (!d.containsKey("first_written")) {
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("start_block", d.get("start_block"));
                r.put("blocks", d.get("blocks"));
                r.put("first_written", Units.time(((Number) d.get("first_written_ms")).longValue()));
                r.put("last_written", Units.time(((Number) d.get("last_written_ms")).longValue()));
                r.put("first_written_ms", d.get("first_written_ms"));
                r.put("last_written_ms", d.get("last_written_ms"));
                d.clear();
                d.putAll(r);
            }
        }
        if (json) {
            System.out.println(Json.write(out));
        } else {
            print(out);
        }
    }

    @SuppressWarnings("unchecked")
    static void print(Map<String, Object> m) {
        List<Object> ranges = (List<Object>) m.get("ranges");
        if (m.get("volume") != null) {
            System.out.printf("mirror %s, volume %s: seq %s received %s%n", m.get("name"), m.get("volume"), m.get("sequence"), m.get("received"));
        }
        System.out.printf("tracking log (%s): %s dirty block(s); %d range(s), %s block(s) in the window%n", m.get("source"),
                m.get("dirty_blocks"), ranges.size(), m.get("blocks_in_window"));
        if (!ranges.isEmpty()) System.out.printf("  %-14s %-10s %-25s %s%n", "START BLOCK", "BLOCKS", "FIRST WRITTEN", "LAST WRITTEN");
        for (Object o : ranges) {
            Map<String, Object> d = (Map<String, Object>) o;
            System.out.printf("  %-14s %-10s %-25s %s%n", d.get("start_block"), d.get("blocks"), d.get("first_written"), d.get("last_written"));
        }
    }
}
