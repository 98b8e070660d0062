package dev.skein.e2e;

import static dev.skein.e2e.Util.obj;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * A group member on a thread of its own: it polls all the time (as an application does), records
 * every rebalance callback and every record, and runs calls handed to it on its poll thread (a
 * KafkaConsumer is single-threaded).
 */
final class Member implements ConsumerRebalanceListener {
  /** Every member's callbacks and the scenario's markers, in the order they happened. */
  static final List<Map<String, Object>> LOG = Collections.synchronizedList(new ArrayList<>());

  static void mark(String what) {
    LOG.add(obj("mark", what));
  }

  final String name;
  final String topic;
  private final KafkaConsumer<String, String> consumer;
  private final Thread thread;
  private final ConcurrentLinkedQueue<Runnable> calls = new ConcurrentLinkedQueue<>();
  final Set<Integer> owned = Collections.synchronizedSet(new TreeSet<>());
  final List<ConsumerRecord<String, String>> records = Collections.synchronizedList(new ArrayList<>());
  volatile Throwable fatal;
  volatile boolean closed;
  private volatile boolean stop;
  private volatile boolean leaveOnClose = true;

  static Properties props(String bootstrap, String group) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "100");
    p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    return p;
  }

  /** Classic protocol settings: short heartbeats, the broker's minimum session timeout. */
  static Properties classic(String bootstrap, String group, String assignor) {
    Properties p = props(bootstrap, group);
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
    p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
    p.put(
        ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
        switch (assignor) {
          case "range" -> "org.apache.kafka.clients.consumer.RangeAssignor";
          case "roundrobin" -> "org.apache.kafka.clients.consumer.RoundRobinAssignor";
          case "cooperative-sticky" -> "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
          default -> throw new IllegalArgumentException("assignor " + assignor);
        });
    return p;
  }

  Member(String name, String topic, Properties props) {
    this.name = name;
    this.topic = topic;
    props.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
    this.consumer = new KafkaConsumer<>(props, new StringDeserializer(), new StringDeserializer());
    this.thread = new Thread(this::loop, "member-" + name);
    this.thread.setDaemon(true);
    this.thread.start();
  }

  private void loop() {
    try {
      consumer.subscribe(List.of(topic), this);
      while (!stop) {
        Runnable r;
        while ((r = calls.poll()) != null) r.run();
        for (ConsumerRecord<String, String> rec : consumer.poll(Duration.ofMillis(100))) {
          records.add(rec);
        }
      }
    } catch (Throwable t) {
      fatal = t;
      LOG.add(obj("member", name, "event", "fatal", "error", t.getClass().getSimpleName()));
    }
    try {
      consumer.close(
          CloseOptions.timeout(Duration.ofSeconds(10))
              .withGroupMembershipOperation(
                  leaveOnClose
                      ? CloseOptions.GroupMembershipOperation.DEFAULT
                      : CloseOptions.GroupMembershipOperation.REMAIN_IN_GROUP));
    } catch (Throwable t) {
      LOG.add(obj("member", name, "event", "close-error", "error", t.toString()));
    }
    closed = true;
  }

  /** Run `f` on the poll thread; wait for its answer (at most 30 s). */
  <T> T call(Function<KafkaConsumer<String, String>, T> f) throws Exception {
    CompletableFuture<T> done = new CompletableFuture<>();
    calls.add(
        () -> {
          try {
            done.complete(f.apply(consumer));
          } catch (Throwable t) {
            done.completeExceptionally(t);
          }
        });
    try {
      return done.get(30, TimeUnit.SECONDS);
    } catch (java.util.concurrent.ExecutionException e) {
      if (e.getCause() instanceof Exception c) throw c;
      throw e;
    }
  }

  /** commitSync of the positions of everything owned; returns the error's name or "ok". */
  String commit() throws Exception {
    return call(
        c -> {
          try {
            c.commitSync(Duration.ofSeconds(15));
            return "ok";
          } catch (RuntimeException e) {
            return e.getClass().getSimpleName();
          }
        });
  }

  int generation() throws Exception {
    return call(c -> c.groupMetadata().generationId());
  }

  String memberId() throws Exception {
    return call(c -> c.groupMetadata().memberId());
  }

  /** Stop polling and close; `leave` false keeps a static member's place (REMAIN_IN_GROUP). */
  void close(boolean leave) throws Exception {
    leaveOnClose = leave;
    stop = true;
    thread.join(20_000);
    if (thread.isAlive()) throw new IllegalStateException(name + " did not close within 20 s");
  }

  List<Integer> ownedNow() {
    synchronized (owned) {
      return new ArrayList<>(owned);
    }
  }

  private void event(String what, Collection<TopicPartition> tps) {
    LOG.add(obj("member", name, "event", what, "partitions", Util.parts(tps)));
  }

  @Override
  public void onPartitionsAssigned(Collection<TopicPartition> tps) {
    event("assigned", tps);
    for (TopicPartition tp : tps) owned.add(tp.partition());
  }

  @Override
  public void onPartitionsRevoked(Collection<TopicPartition> tps) {
    event("revoked", tps);
    for (TopicPartition tp : tps) owned.remove(tp.partition());
  }

  @Override
  public void onPartitionsLost(Collection<TopicPartition> tps) {
    event("lost", tps);
    for (TopicPartition tp : tps) owned.remove(tp.partition());
  }

  /** Records read, as JSON: partition, offset, key, value. */
  List<Map<String, Object>> recordsJson() {
    List<Map<String, Object>> out = new ArrayList<>();
    synchronized (records) {
      for (ConsumerRecord<String, String> r : records) {
        out.add(obj("partition", r.partition(), "offset", r.offset(), "key", r.key(), "value", r.value()));
      }
    }
    return out;
  }
}
