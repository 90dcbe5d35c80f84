package org.ublkmirror.cli;

import org.ublkmirror.daemon.ControlClient;
import org.ublkmirror.daemon.Daemon;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Files;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "stop", description = {"Remove the device and stop the daemon, cleanly (legs marked clean).",
        "Refuses while the device is mounted, unless --force."})
final class StopCmd implements Callable<Integer> {
    @Mixin
    Common common;

    @Parameters(index = "0", paramLabel = "NAME")
    String name;

    @Option(names = "--force", description = "Stop even if the device is mounted (the file system will see I/O errors).")
    boolean force;

    @Override
    public Integer call() throws Exception {
        common.load(name);
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("verb", "stop");
        req.put("force", force);
        Control.call(name, req, null);
        long deadline = System.currentTimeMillis() + 60_000;
        while (System.currentTimeMillis() < deadline) {
            if (!Files.exists(ControlClient.socket(name)) && !Files.exists(Daemon.runDir().resolve(name + ".pid"))) {
                System.out.println("stopped " + name);
                return 0;
            }
            Thread.sleep(100);
        }
        throw new Mirrorctl.Failure(Mirrorctl.IO, "daemon of '" + name + "' did not stop within 60 s");
    }
}
