package org.ublkmirror.cli;

import org.ublkmirror.link.LinkConfig;
import org.ublkmirror.link.ResyncPolicy;
import picocli.CommandLine.Option;

import java.time.Duration;

/** The secondary's link settings, for create and config; unset options keep the current value. */
final class LinkOptions {
    @Option(names = "--resync-policy", paramLabel = "auto|manual", description = {
            "What a secondary that returns after an outage gets: auto (default: reconnect, attach, resync, as DRBD does)",
            "or manual (reconnect is only probed; run 'mirrorctl attach'). Split brain always refuses."})
    String policy;

    @Option(names = "--io-timeout", paramLabel = "DURATION", description = "A request to an nbd:// secondary unanswered this long declares it lost (default 10s; e.g. 500ms, 2s).")
    String ioTimeout;

    @Option(names = "--connect-timeout", paramLabel = "DURATION", description = "Connecting to the gateway gives up after this (default 5s).")
    String connectTimeout;

    @Option(names = "--heartbeat", paramLabel = "DURATION", description = "Probe a connected secondary this often, so an idle link is found dead too (default 2s; 0 = off).")
    String heartbeat;

    @Option(names = "--retry-min", paramLabel = "DURATION", description = "First reconnect delay after an outage (default 1s); doubles per failed attempt, with jitter.")
    String retryMin;

    @Option(names = "--retry-max", paramLabel = "DURATION", description = "Largest reconnect delay (default 30s).")
    String retryMax;

    @Option(names = "--resync-rate", paramLabel = "BYTES/S", description = "Rate limit of an automatic resync, e.g. 50M (default 0 = unlimited).")
    String resyncRate;

    @Option(names = "--resync-window", paramLabel = "N", description = {
            "Resync copies (1 MiB each) in flight at most, 1..64 (default 16): more keeps a fast or distant link busy;",
            "a running resync takes a change for its next copies."})
    String resyncWindow;

    @Option(names = "--resync-window-mode", paramLabel = "adaptive|fixed", description = {
            "adaptive (default): the copies in flight follow their latency, up to --resync-window, so that application",
            "writes do not queue behind the resync on a slow link; fixed: always --resync-window copies in flight.",
            "A running resync takes a change for its next copies."})
    String resyncWindowMode;

    boolean any() {
        return policy != null || ioTimeout != null || connectTimeout != null || heartbeat != null || retryMin != null
                || retryMax != null || resyncRate != null || resyncWindow != null
                || resyncWindowMode != null;
    }

    LinkConfig apply(LinkConfig c) {
        if (policy != null) c = c.withPolicy(ResyncPolicy.parse(policy));
        if (ioTimeout != null) c = c.withIoTimeout(duration("--io-timeout", ioTimeout));
        if (connectTimeout != null) c = c.withConnectTimeout(duration("--connect-timeout", connectTimeout));
        if (heartbeat != null) c = c.withHeartbeat(duration("--heartbeat", heartbeat));
        if (retryMin != null || retryMax != null) {
            c = c.withRetry(retryMin != null ? duration("--retry-min", retryMin) : c.retryMin(),
                    retryMax != null ? duration("--retry-max", retryMax) : c.retryMax());
        }
        if (resyncRate != null) c = c.withResyncRate(Units.parseSize(resyncRate));
        if (resyncWindow != null) {
            int w;
            try {
                w = Integer.parseInt(resyncWindow.trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("--resync-window '" + resyncWindow + "' is not a number; give 1.." + LinkConfig.MAX_WINDOW);
            }
            c = c.withResyncWindow(w);
        }
        if (resyncWindowMode != null) c = c.withResyncAdaptive(LinkConfig.parseWindowMode(resyncWindowMode));
        return c;
    }

    /** 250ms, 2s, 1m, 1h, or plain milliseconds. */
    static Duration duration(String opt, String s) {
        String t = s.trim().toLowerCase(java.util.Locale.ROOT);
        try {
            if (t.matches("\\d+ms")) return Duration.ofMillis(Long.parseLong(t.substring(0, t.length() - 2)));
            if (t.matches("\\d+(\\.\\d+)?s")) return Duration.ofMillis((long) (Double.parseDouble(t.substring(0, t.length() - 1)) * 1000));
            if (t.matches("\\d+m")) return Duration.ofMinutes(Long.parseLong(t.substring(0, t.length() - 1)));
            if (t.matches("\\d+h")) return Duration.ofHours(Long.parseLong(t.substring(0, t.length() - 1)));
            if (t.matches("\\d+")) return Duration.ofMillis(Long.parseLong(t));
        } catch (NumberFormatException e) {
            // fall through
        }
        throw new IllegalArgumentException(opt + " '" + s + "' is not a duration; write it like 500ms, 2s, 1m");
    }
}
