package org.ublkmirror.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "resync", description = "Start the resync (attaching the secondary if needed), change its rate, or wait for it with progress.")
final class ResyncCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--rate", paramLabel = "BYTES/S", description = "Rate limit, e.g. 50M; 0 = unlimited. Applies to a running resync too.")
    String rate;

    @Option(names = "--wait", description = "Wait until the legs are in sync, with a progress bar.")
    boolean await;

    @Override
    public Integer call() throws Exception {
        common.load(name);
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("verb", "resync");
        if (rate != null) req.put("rate", Units.parseSize(rate));
        req.put("wait", await);
        Map<String, Object> res = Control.call(name, req, await ? Control.progressBar("resync") : null);
        if (await) Control.endProgress();
        System.out.println(name + ": " + res.get("state") + ", " + res.get("dirty_blocks") + " dirty block(s)"
                + (res.get("resynced_blocks") != null ? ", resync copied " + res.get("resynced_blocks") + " block(s)" : ""));
        if (res.get("resync_report") instanceof Map<?, ?> r) System.out.println("  " + describe(r));
        return 0;
    }

    /** "; copies of 128K..1M": the sizes the adaptive window cut the copies to (empty when not reported). */
    private static String copies(Map<?, ?> r) {
        if (!(r.get("copy_bytes_low") instanceof Number lo) || !(r.get("copy_bytes_high") instanceof Number hi) || hi.longValue() == 0) {
            return "";
        }
        return "; copies of " + (lo.longValue() == hi.longValue() ? Units.human(hi.longValue())
                : Units.human(lo.longValue()) + ".." + Units.human(hi.longValue()));
    }

    /** The daemon's resync report as one line (times measured inside the daemon). */
    static String describe(Map<?, ?> r) {
        return "resync " + r.get("bytes") + " bytes in " + r.get("ms") + " ms (" + r.get("mb_per_s") + " MB/s; copy passes "
                + r.get("copy_ms") + " ms); window " + r.get("window")
                + (org.ublkmirror.resync.WindowControl.modeName(true).equals(r.get("window_mode")) ? " adaptive (" + r.get("window_mean") + " in flight on average, "
                        + r.get("window_low") + ".." + r.get("window_high") + "; copy latency " + r.get("copy_latency_ms")
                        + " ms, unloaded " + r.get("copy_latency_base_ms") + " ms" + copies(r) + ")"
                        : r.get("window_mode") != null ? " fixed (copy latency " + r.get("copy_latency_ms") + " ms)" : "")
                + ", " + r.get("checkpoints") + " checkpoint(s)"
                + (Boolean.TRUE.equals(r.get("pipelined")) ? " (" + r.get("background_checkpoints") + " beside the copies)" : " (stalling)")
                + ": waiting for the window " + r.get("checkpoint_drain_ms") + " ms, for a checkpoint " + r.get("checkpoint_wait_ms")
                + " ms; secondary flush " + r.get("checkpoint_flush_ms") + " ms, log persist "
                + r.get("checkpoint_persist_ms") + " ms; summed over copies: primary reads " + r.get("primary_read_ms_summed")
                + " ms, secondary writes " + r.get("secondary_write_ms_summed") + " ms";
    }
}
