package dev.skein.e2e;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;

/** JSON output, waiting and small client helpers shared by the scenarios. */
final class Util {
  private Util() {}

  /** An ordered JSON object from alternating keys and values. */
  static Map<String, Object> obj(Object... kv) {
    Map<String, Object> m = new LinkedHashMap<>();
    for (int i = 0; i < kv.length; i += 2) {
      m.put((String) kv[i], kv[i + 1]);
    }
    return m;
  }

  /** One JSON line on stdout: the test reads these (the last one is the scenario's report). */
  static synchronized void emit(Map<String, Object> m) {
    System.out.println(json(m));
    System.out.flush();
  }

  static String json(Object o) {
    StringBuilder sb = new StringBuilder();
    write(sb, o);
    return sb.toString();
  }

  private static void write(StringBuilder sb, Object o) {
    if (o == null) {
      sb.append("null");
    } else if (o instanceof String s) {
      quote(sb, s);
    } else if (o instanceof Number || o instanceof Boolean) {
      sb.append(o);
    } else if (o instanceof byte[] b) {
      quote(sb, new String(b, StandardCharsets.UTF_8));
    } else if (o instanceof Map<?, ?> m) {
      sb.append('{');
      boolean first = true;
      for (Map.Entry<?, ?> e : m.entrySet()) {
        if (!first) sb.append(',');
        first = false;
        quote(sb, String.valueOf(e.getKey()));
        sb.append(':');
        write(sb, e.getValue());
      }
      sb.append('}');
    } else if (o instanceof Collection<?> c) {
      sb.append('[');
      boolean first = true;
      for (Object x : c) {
        if (!first) sb.append(',');
        first = false;
        write(sb, x);
      }
      sb.append(']');
    } else if (o instanceof java.util.Optional<?> opt) {
      write(sb, opt.orElse(null));
    } else {
      quote(sb, o.toString());
    }
  }

  private static void quote(StringBuilder sb, String s) {
    sb.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> sb.append("\\\"");
        case '\\' -> sb.append("\\\\");
        case '\n' -> sb.append("\\n");
        case '\r' -> sb.append("\\r");
        case '\t' -> sb.append("\\t");
        default -> {
          if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
          else sb.append(c);
        }
      }
    }
    sb.append('"');
  }

  static String str(byte[] b) {
    return b == null ? null : new String(b, StandardCharsets.UTF_8);
  }

  static byte[] bytes(String s) {
    return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
  }

  /** Wait until `cond` holds, polling every 50 ms; fail with `what` after `timeout`. */
  static void waitFor(String what, Duration timeout, BooleanSupplier cond) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!cond.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("timed out after " + timeout.toSeconds() + "s waiting for " + what);
      }
      sleep(50);
    }
  }

  static void sleep(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** A future's value, waiting at most 30 s. */
  static <T> T get(KafkaFuture<T> f) throws Exception {
    try {
      return f.get(30, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof Exception c) throw c;
      throw e;
    }
  }

  /** "ok", or the simple class name of the exception the future failed with. */
  static String outcome(KafkaFuture<?> f) {
    try {
      f.get(30, TimeUnit.SECONDS);
      return "ok";
    } catch (ExecutionException e) {
      return e.getCause().getClass().getSimpleName();
    } catch (Exception e) {
      return e.getClass().getSimpleName();
    }
  }

  static Properties adminProps(String bootstrap) {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    return p;
  }

  static void createTopic(Admin admin, String topic, int partitions, short rf, Map<String, String> configs)
      throws Exception {
    get(admin.createTopics(List.of(new NewTopic(topic, partitions, rf).configs(configs))).all());
  }

  /** Sorted partition numbers, as a JSON list. */
  static List<Integer> parts(Collection<TopicPartition> tps) {
    TreeSet<Integer> s = new TreeSet<>();
    for (TopicPartition tp : tps) s.add(tp.partition());
    return new ArrayList<>(s);
  }

  static String errorName(Throwable t) {
    return t == null ? null : t.getClass().getSimpleName();
  }
}
