package org.ublkmirror.link;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;

/**
 * How the mirror watches its secondary and what it does when it returns. Kept beside the mirror's
 * configuration as {@code NAME.link.conf} (absent: the defaults), written by {@code mirrorctl
 * create} and changed by {@code mirrorctl config}, which also tells a running daemon.
 *
 * <p>Detection bound: a secondary that stops answering is declared lost {@code ioTimeout} after
 * the oldest unanswered request was issued (plus the NBD watchdog's tick, at most 200 ms); an
 * idle connection is probed every {@code heartbeat}, so an idle link is found dead within
 * {@code heartbeat + ioTimeout}. A dropped connection (RST, FIN) is found at once. Application
 * writes wait at most that long, then complete on the primary and are tracked.
 *
 * @param policy         what a returning secondary gets: {@link ResyncPolicy}
 * @param ioTimeout      an NBD request unanswered this long breaks the connection (for the next connection on change)
 * @param connectTimeout a TCP connect (and handshake) to the gateway gives up after this
 * @param heartbeat      how often a connected secondary is probed with a small read (0: never)
 * @param retryMin       first reconnect delay after an outage
 * @param retryMax       the largest reconnect delay (backoff doubles up to it, with jitter)
 * @param resyncRate     bytes/s for an automatic resync (0: unlimited)
 * @param resyncWindow   resync copies in flight at once (1..{@link #MAX_WINDOW}; docs/resync.md, "The window"); every
 *                       resync (automatic or 'mirrorctl attach'/'resync') takes it when it starts or resumes
 * @param resyncAdaptive the window follows the copies' latency up to {@code resyncWindow} (default; {@code
 *                       resync-window-mode adaptive}), or is always {@code resyncWindow} ({@code fixed})
 */
public record LinkConfig(ResyncPolicy policy, Duration ioTimeout, Duration connectTimeout, Duration heartbeat,
                         Duration retryMin, Duration retryMax, long resyncRate, int resyncWindow, boolean resyncAdaptive) {

    /** The default window (16 copies of 1 MiB at most); the largest one taken. */
    public static final int DEFAULT_WINDOW = org.ublkmirror.resync.Resync.Options.DEFAULT_WINDOW, MAX_WINDOW = org.ublkmirror.resync.WindowControl.MAX_WINDOW;

    public static final LinkConfig DEFAULTS = new LinkConfig(ResyncPolicy.AUTO, Duration.ofSeconds(10), Duration.ofSeconds(5),
            Duration.ofSeconds(2), Duration.ofSeconds(1), Duration.ofSeconds(30), 0, DEFAULT_WINDOW, true);

    /** Without a window: the default one. */
    public LinkConfig(ResyncPolicy policy, Duration ioTimeout, Duration connectTimeout, Duration heartbeat,
                      Duration retryMin, Duration retryMax, long resyncRate) {
        this(policy, ioTimeout, connectTimeout, heartbeat, retryMin, retryMax, resyncRate, DEFAULT_WINDOW, true);
    }

    public LinkConfig {
        if (policy == null) throw new IllegalArgumentException("a resync policy is needed (auto or manual)");
        positive("io-timeout", ioTimeout);
        positive("connect-timeout", connectTimeout);
        positive("retry-min", retryMin);
        positive("retry-max", retryMax);
        if (heartbeat == null || heartbeat.isNegative()) throw new IllegalArgumentException("--heartbeat must be 0 (off) or positive");
        if (retryMax.compareTo(retryMin) < 0) {
            throw new IllegalArgumentException("--retry-max " + retryMax.toMillis() + " ms is below --retry-min " + retryMin.toMillis() + " ms");
        }
        if (resyncRate < 0) throw new IllegalArgumentException("--resync-rate must be 0 (unlimited) or positive");
        if (resyncWindow < 1 || resyncWindow > MAX_WINDOW) {
            throw new IllegalArgumentException("--resync-window " + resyncWindow + " is out of range; use 1.." + MAX_WINDOW + " copies in flight");
        }
    }

    private static void positive(String what, Duration d) {
        if (d == null || d.isNegative() || d.isZero()) throw new IllegalArgumentException("--" + what + " must be positive");
    }

    public LinkConfig withPolicy(ResyncPolicy p) {
        return new LinkConfig(p, ioTimeout, connectTimeout, heartbeat, retryMin, retryMax, resyncRate, resyncWindow, resyncAdaptive);
    }

    public LinkConfig withIoTimeout(Duration d) {
        return new LinkConfig(policy, d, connectTimeout, heartbeat, retryMin, retryMax, resyncRate, resyncWindow, resyncAdaptive);
    }

    public LinkConfig withConnectTimeout(Duration d) {
        return new LinkConfig(policy, ioTimeout, d, heartbeat, retryMin, retryMax, resyncRate, resyncWindow, resyncAdaptive);
    }

    public LinkConfig withHeartbeat(Duration d) {
        return new LinkConfig(policy, ioTimeout, connectTimeout, d, retryMin, retryMax, resyncRate, resyncWindow, resyncAdaptive);
    }

    public LinkConfig withRetry(Duration min, Duration max) {
        return new LinkConfig(policy, ioTimeout, connectTimeout, heartbeat, min, max, resyncRate, resyncWindow, resyncAdaptive);
    }

    public LinkConfig withResyncRate(long r) {
        return new LinkConfig(policy, ioTimeout, connectTimeout, heartbeat, retryMin, retryMax, r, resyncWindow, resyncAdaptive);
    }

    public LinkConfig withResyncWindow(int w) {
        return new LinkConfig(policy, ioTimeout, connectTimeout, heartbeat, retryMin, retryMax, resyncRate, w, resyncAdaptive);
    }

    /** {@code adaptive}: the window follows the copies' latency up to resyncWindow; else it is always resyncWindow. */
    public LinkConfig withResyncAdaptive(boolean adaptive) {
        return new LinkConfig(policy, ioTimeout, connectTimeout, heartbeat, retryMin, retryMax, resyncRate, resyncWindow, adaptive);
    }

    /** "adaptive" or "fixed", as {@code --resync-window-mode} takes it. */
    public String resyncWindowMode() {
        return org.ublkmirror.resync.WindowControl.modeName(resyncAdaptive);
    }

    /** adaptive|fixed (case ignored) as a boolean; else one line saying what to give. */
    public static boolean parseWindowMode(String s) {
        String t = String.valueOf(s).trim().toLowerCase(java.util.Locale.ROOT);
        if (t.equals(org.ublkmirror.resync.WindowControl.modeName(true))) return true;
        if (t.equals(org.ublkmirror.resync.WindowControl.modeName(false))) return false;
        throw new IllegalArgumentException("--resync-window-mode '" + s + "' is not a mode; use adaptive or fixed");
    }

    public static Path file(Path dir, String name) {
        return dir.resolve(name + ".link.conf");
    }

    /** The settings as an ordered map (status, JSON, the control socket). */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("resync_policy", policy.lower());
        m.put("io_timeout_ms", ioTimeout.toMillis());
        m.put("connect_timeout_ms", connectTimeout.toMillis());
        m.put("heartbeat_ms", heartbeat.toMillis());
        m.put("retry_min_ms", retryMin.toMillis());
        m.put("retry_max_ms", retryMax.toMillis());
        m.put("resync_rate", resyncRate);
        m.put("resync_window", resyncWindow);
        m.put("resync_window_mode", resyncWindowMode());
        return m;
    }

    /** The inverse of {@link #toMap}; missing keys keep this config's values. */
    public LinkConfig merge(Map<String, ?> m) {
        return new LinkConfig(
                m.containsKey("resync_policy") ? ResyncPolicy.parse(String.valueOf(m.get("resync_policy"))) : policy,
                ms(m, "io_timeout_ms", ioTimeout), ms(m, "connect_timeout_ms", connectTimeout), ms(m, "heartbeat_ms", heartbeat),
                ms(m, "retry_min_ms", retryMin), ms(m, "retry_max_ms", retryMax),
                m.containsKey("resync_rate") ? num(m.get("resync_rate")) : resyncRate,
                m.containsKey("resync_window") ? (int) Math.max(Integer.MIN_VALUE, Math.min(Integer.MAX_VALUE, num(m.get("resync_window")))) : resyncWindow,
                m.containsKey("resync_window_mode") ? parseWindowMode(String.valueOf(m.get("resync_window_mode"))) : resyncAdaptive);
    }

    private static Duration ms(Map<String, ?> m, String k, Duration dflt) {
        return m.containsKey(k) ? Duration.ofMillis(num(m.get(k))) : dflt;
    }

    private static long num(Object v) {
        if (v instanceof Number n) return n.longValue();
        try {
            return Long.parseLong(String.valueOf(v).trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + v + "' is not a number");
        }
    }

    public void save(Path dir, String name) throws IOException {
        Files.createDirectories(dir);
        Properties p = new Properties();
        toMap().forEach((k, v) -> p.setProperty(k.replace('_', '-'), String.valueOf(v)));
        Path tmp = dir.resolve("." + name + ".link.conf.tmp");
        try (Writer w = Files.newBufferedWriter(tmp)) {
            p.store(w, "ublk-mirror " + name + ": the secondary's link (mirrorctl config " + name + " changes it)");
        }
        Files.move(tmp, file(dir, name), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /** The saved settings, or the defaults when there is no file (a mirror made before it existed). */
    public static LinkConfig load(Path dir, String name) throws IOException {
        Path f = file(dir, name);
        if (!Files.exists(f)) return DEFAULTS;
        Properties p = new Properties();
        try (Reader r = Files.newBufferedReader(f)) {
            p.load(r);
        }
        Map<String, Object> m = new LinkedHashMap<>();
        for (String k : p.stringPropertyNames()) m.put(k.replace('-', '_'), p.getProperty(k));
        try {
            return DEFAULTS.merge(m);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(f + ": " + e.getMessage() + "; fix it with 'mirrorctl config " + name + "'");
        }
    }
}
