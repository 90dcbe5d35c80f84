package org.ublkmirror.cli;

import org.ublkmirror.daemon.ControlClient;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;

/** The CLI side of the control socket. */
final class Control {
    private Control() {
    }

    static boolean running(String name) {
        return ControlClient.running(name);
    }

    /** The daemon's status map, or null when the mirror is not running. */
    static Map<String, Object> tryStatus(String name) throws IOException {
        return tryCall(name, "status");
    }

    static Map<String, Object> tryCall(String name, String verb) throws IOException {
        return tryCall(name, verb, Map.of());
    }

    /** Calls the daemon if it runs (null otherwise); a daemon-side error becomes a Failure. */
    static Map<String, Object> tryCall(String name, String verb, Map<String, String> args) throws IOException {
        if (!ControlClient.running(name)) return null;
        Map<String, Object> req = new LinkedHashMap<>(args);
        req.put("verb", verb);
        return result(ControlClient.call(name, req, null));
    }

    /** Calls the daemon, which must run. */
    static Map<String, Object> call(String name, Map<String, Object> req, Consumer<Map<String, Object>> progress) throws IOException {
        if (!ControlClient.running(name)) {
            throw new Mirrorctl.Failure(Mirrorctl.STATE, "mirror '" + name + "' is not running; start it with 'mirrorctl start " + name + "'");
        }
        return result(ControlClient.call(name, req, progress));
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> result(Map<String, Object> res) {
        long code = ((Number) res.getOrDefault("exit", 5L)).longValue();
        if (code != 0) throw new Mirrorctl.Failure((int) code, String.valueOf(res.get("error")));
        Object r = res.get("result");
        return r instanceof Map<?, ?> ? (Map<String, Object>) r : new LinkedHashMap<>(Map.of("result", String.valueOf(r)));
    }

    /** A progress bar on stderr when it is a terminal, a line every few seconds otherwise. */
    static Consumer<Map<String, Object>> progressBar(String what) {
        boolean tty = System.console() != null;
        long[] last = {0};
        long start = System.currentTimeMillis();
        return p -> {
            long done = ((Number) p.get("copied_blocks")).longValue(), total = ((Number) p.get("total_blocks")).longValue();
            long bs = ((Number) p.getOrDefault("block_size", 4096L)).longValue();
            long now = System.currentTimeMillis();
            double secs = Math.max(0.001, (now - start) / 1000.0);
            double rate = done * bs / secs;
            int pct = total == 0 ? 100 : (int) (100 * done / total);
            String eta = rate > 0 && total > done ? String.format("%.0fs", (total - done) * bs / rate) : "-";
            if (tty) {
                int w = 30, fill = pct * w / 100;
                System.err.printf("\r%s [%s%s] %3d%% %s / %s  %s/s  ETA %s   ", what, "#".repeat(fill), ".".repeat(w - fill), pct,
                        Units.human(done * bs), Units.human(total * bs), Units.human((long) rate), eta);
            } else if (now - last[0] >= 2000) {
                last[0] = now;
                System.err.printf("%s: %d%% (%s of %s, %s/s)%n", what, pct, Units.human(done * bs), Units.human(total * bs), Units.human((long) rate));
            }
        };
    }

    static void endProgress() {
        if (System.console() != null) System.err.println();
    }
}
