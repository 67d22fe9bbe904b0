// The live room (SPEC.md §6). Plain script, no build step. The server is the
// source of truth: every change arrives as a push and is drawn from there,
// and a reconnect replaces the whole state with the next hello.
(function () {
  "use strict";

  var root = document.getElementById("live-room");
  var configNode = document.getElementById("live-config");
  var stringsNode = document.getElementById("live-strings");
  if (!root || !configNode || !stringsNode) { return; }
  var config = JSON.parse(configNode.textContent);
  var T = JSON.parse(stringsNode.textContent);
  var lang = document.documentElement.lang || undefined;

  var PING_EVERY = 25000;
  var HELLO_WITHIN = 15000;
  var BACKOFF_FIRST = 500;
  // Close codes and limits come from the page (streaming/protocol.py).
  var PROTOCOL = config.protocol;
  var BACKOFF_MAX = PROTOCOL.retryMax * 1000;

  function $(selector, scope) { return (scope || root).querySelector(selector); }
  function $all(selector, scope) { return Array.prototype.slice.call((scope || root).querySelectorAll(selector)); }
  function format(text, values) {
    return text.replace(/\{(\w+)\}/g, function (match, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : match;
    });
  }
  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  var state = {
    status: config.status,
    role: null,
    questions: new Map(),
    viewers: null,
    sort: "votes",
    stream: config.stream,
  };
  // Who may do what comes from the server (streaming/access.py), with the
  // page's configuration: the role ranking and each capability's least role.
  var rules = config.access || { roles: [], capabilities: {} };
  function can(role, capability) {
    var needed = rules.capabilities[capability];
    return !!role && !!needed && rules.roles.indexOf(role) >= rules.roles.indexOf(needed);
  }
  state.role = config.role || null;
  var moderates = can(state.role, "moderate");
  // What the page was rendered for: the moderation panel and the organiser
  // controls exist only when it was rendered for someone who may use them.
  var renderedModerates = moderates;

  // Screens -----------------------------------------------------------------

  var stage = $("[data-stage]");
  var badge = $("[data-status-badge]");
  var streamBox = $("[data-stream]");
  var mountedStream = null;

  function showStatus(status, announceIt) {
    var changed = status !== state.status;
    state.status = status;
    root.setAttribute("data-status", status);
    stage.className = "stage stage-" + status;
    $all("[data-screen]").forEach(function (screen) {
      screen.hidden = screen.getAttribute("data-screen") !== status;
    });
    badge.className = "badge badge-" + status + " stage-badge";
    badge.textContent = "";
    if (status === "live") { badge.appendChild(make("span", "live-dot")).setAttribute("aria-hidden", "true"); }
    badge.appendChild(document.createTextNode(T.status[status] || status));
    if (status === "live") { mountStream(); } else { unmountStream(); }
    if (status === "scheduled") { startCountdown(); } else { stopCountdown(); }
    var open = status === "scheduled" || status === "live";
    var askForm = $("[data-ask-form]");
    if (askForm) {
      askForm.hidden = !open;
      $("[data-closed-note]").hidden = open;
    }
    var goLive = $("[data-go-live]");
    var end = $("[data-end-session]");
    if (goLive) { goLive.hidden = status !== "scheduled"; }
    if (end) { end.hidden = status !== "live"; }
    if (changed && announceIt && T.announce_status[status]) { announce(T.announce_status[status]); }
    renderQuestions();
  }

  // Stream ------------------------------------------------------------------

  function streamKey(stream) { return stream.kind + " " + (stream.url || ""); }

  function mountStream() {
    if (!streamBox) { return; }
    var key = streamKey(state.stream);
    if (mountedStream === key) { return; }
    unmountStream();
    mountedStream = key;
    var kind = state.stream.kind;
    var url = state.stream.url;
    if (kind === "video") {
      streamBox.appendChild(videoElement(url));
    } else if (kind === "embed") {
      var frame = make("iframe", "stream-frame");
      // Scripts for the player, but no top navigation or forms: a third
      // party page must not take over the room.
      frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-presentation allow-popups");
      frame.setAttribute("allow", "autoplay; fullscreen; picture-in-picture; encrypted-media");
      frame.setAttribute("allowfullscreen", "");
      frame.setAttribute("referrerpolicy", "strict-origin-when-cross-origin");
      frame.title = T.player_title;
      frame.src = url;
      streamBox.appendChild(frame);
    } else if (kind === "hls") {
      mountHls(url);
    } else {
      var placeholder = make("div", "stream-none");
      placeholder.appendChild(make("p", "stage-message", T.no_stream));
      streamBox.appendChild(placeholder);
    }
  }

  function videoElement(url) {
    var video = make("video", "stream-video");
    video.controls = true;
    video.playsInline = true;
    video.setAttribute("playsinline", "");
    video.preload = "metadata";
    video.title = T.player_title;
    if (url) { video.src = url; }
    return video;
  }

  function mountHls(url) {
    var key = mountedStream;
    var video = videoElement(null);
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
      streamBox.appendChild(video);
      return;
    }
    if (!config.hlsPlayerUrl) { cannotPlay(url); return; }
    loadPlayer(config.hlsPlayerUrl).then(function () {
      if (mountedStream !== key) { return; }
      var Hls = window.Hls;
      if (!Hls || (Hls.isSupported && !Hls.isSupported())) { cannotPlay(url); return; }
      var player = new Hls();
      player.loadSource(url);
      player.attachMedia(video);
      video.hlsPlayer = player;
      streamBox.appendChild(video);
    }, function () {
      if (mountedStream === key) { cannotPlay(url); }
    });
  }

  var playerPromise = null;
  function loadPlayer(src) {
    if (!playerPromise) {
      playerPromise = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = src;
        script.async = true;
        script.onload = resolve;
        script.onerror = function () { playerPromise = null; reject(); };
        document.head.appendChild(script);
      });
    }
    return playerPromise;
  }

  function cannotPlay(url) {
    var box = make("div", "stream-none");
    box.appendChild(make("p", "stage-message", T.cannot_play));
    var p = make("p", "stage-action");
    var link = make("a", "button button-light", T.open_stream);
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener";
    p.appendChild(link);
    box.appendChild(p);
    streamBox.appendChild(box);
  }

  function unmountStream() {
    if (!streamBox || mountedStream === null) { return; }
    mountedStream = null;
    $all("video", streamBox).forEach(function (video) {
      if (video.hlsPlayer) { video.hlsPlayer.destroy(); }
      video.pause();
      video.removeAttribute("src");
      video.load();
    });
    streamBox.textContent = "";
  }

  // Countdown ---------------------------------------------------------------

  var countdown = $("[data-countdown]");
  var countdownTimer = null;
  // The phone's clock may be minutes off; measure against the server's.
  var clockSkew = new Date(config.serverNow).getTime() - Date.now();
  var startsAt = new Date(config.startsAt).getTime();

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function tick() {
    var left = Math.max(0, Math.floor((startsAt - (Date.now() + clockSkew)) / 1000));
    var label = $("[data-countdown-label]");
    var message = $("[data-waiting-message]");
    if (left === 0) {
      countdown.hidden = true;
      label.textContent = T.starting_soon;
      message.textContent = T.starting_soon_message;
      return;
    }
    var days = Math.floor(left / 86400);
    var hours = Math.floor((left % 86400) / 3600);
    var minutes = Math.floor((left % 3600) / 60);
    var seconds = left % 60;
    countdown.hidden = false;
    $("[data-part=days]", countdown).hidden = days === 0;
    $("[data-part=days] .countdown-n", countdown).textContent = String(days);
    $("[data-part-n=hours]", countdown).textContent = pad(hours);
    $("[data-part-n=minutes]", countdown).textContent = pad(minutes);
    $("[data-part-n=seconds]", countdown).textContent = pad(seconds);
    var spoken = (days ? days + " " + $("[data-part=days] .countdown-unit", countdown).textContent + " " : "") +
      pad(hours) + ":" + pad(minutes) + ":" + pad(seconds);
    countdown.setAttribute("aria-label", format(T.countdown_label, { time: spoken }));
  }

  function startCountdown() {
    if (countdownTimer) { return; }
    tick();
    countdownTimer = window.setInterval(tick, 1000);
  }
  function stopCountdown() {
    if (countdownTimer) { window.clearInterval(countdownTimer); countdownTimer = null; }
  }

  // Announcements -------------------------------------------------------------

  var announcer = $("[data-announce]");
  function announce(text) {
    if (!announcer) { return; }
    // Clear first so a repeated message is read again.
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 60);
  }

  function errorText(message) {
    return T.errors[message.code] || T.errors.invalid;
  }

  // Questions -----------------------------------------------------------------

  var timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hour12: false });

  function byVotes(a, b) { return b.votes - a.votes || byAge(a, b); }
  function byAge(a, b) { return a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id - b.id; }
  function byNewest(a, b) { return -byAge(a, b); }

  function renderQuestions() {
    var list = $("[data-questions]");
    if (!list) { return; }
    var all = Array.from(state.questions.values());
    var visible = all.filter(function (q) { return q.status === "visible"; });
    var pinned = visible.filter(function (q) { return q.pinned; });
    // Only a moderator receives other people's pending questions; anyone
    // else's pending ones are their own, shown first until approved.
    var mine = moderates ? [] : all.filter(function (q) { return q.status === "pending"; }).sort(byNewest);
    var rest = visible.filter(function (q) { return !q.pinned; }).sort(state.sort === "votes" ? byVotes : byNewest);
    renderList(list, mine.concat(rest), "qa");
    renderList($("[data-pinned-list]"), pinned, "qa");
    $("[data-pinned]").hidden = pinned.length === 0;
    var empty = $("[data-empty]");
    empty.hidden = mine.length + visible.length > 0;
    empty.textContent = state.status === "ended" || state.status === "cancelled" ? T.empty_closed : T.empty_open;
    // Sorting one question or none is noise.
    $("[data-qa-toolbar] .segmented").hidden = rest.length < 2;
    if (moderates) {
      var pending = all.filter(function (q) { return q.status === "pending"; }).sort(byAge);
      var published = visible.slice().sort(function (a, b) { return (b.pinned - a.pinned) || byVotes(a, b); });
      renderList($("[data-pending-list]"), pending, "mod");
      renderList($("[data-published-list]"), published, "mod");
      $("[data-pending-empty]").hidden = pending.length > 0;
      $("[data-published-empty]").hidden = published.length > 0;
      $("[data-count-pending]").textContent = String(pending.length);
      $("[data-count-pending]").classList.toggle("is-zero", pending.length === 0);
      $("[data-count-visible]").textContent = String(visible.length);
    }
  }

  // Items are updated in place and only moved when the order changes, so a
  // focused vote button or a half-typed answer survives every push.
  function renderList(list, questions, mode) {
    if (!list) { return; }
    var items = list.items || (list.items = new Map());
    var active = document.activeElement;
    var focusedItem = active && list.contains(active) ? active.closest(".question") : null;
    var focusedIndex = focusedItem ? Array.prototype.indexOf.call(list.children, focusedItem) : -1;
    var wanted = new Set(questions.map(function (q) { return q.id; }));
    items.forEach(function (item, id) {
      if (!wanted.has(id)) { item.remove(); items.delete(id); }
    });
    questions.forEach(function (question, index) {
      var item = items.get(question.id);
      if (!item) {
        item = buildItem(question, mode);
        items.set(question.id, item);
      }
      updateItem(item, question, mode);
      if (list.children[index] !== item) { list.insertBefore(item, list.children[index] || null); }
    });
    if (active && active !== document.activeElement && document.contains(active)) {
      active.focus({ preventScroll: true });
    } else if (focusedItem && !document.contains(focusedItem)) {
      // The item left this list (approved, rejected, pinned): keep keyboard
      // users where they were instead of dropping them at the page's top.
      var neighbour = list.children[Math.min(focusedIndex, list.children.length - 1)];
      var target = neighbour && $("button:not([hidden])", neighbour);
      if (!target) { target = list.closest("[role=tabpanel], .room-panel"); }
      if (target) { target.focus({ preventScroll: true }); }
    }
  }

  var VOTE_ICON = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path d="M12 5l7 8h-4.5v6h-5v-6H5z" fill="currentColor"/></svg>';
  var PIN_ICON = '<svg viewBox="0 0 24 24" width="14" height="14" aria-hidden="true"><path d="M9 3h6l-1 6 3 3v2h-4v7l-1 1-1-1v-7H7v-2l3-3z" fill="currentColor"/></svg>';

  function buildItem(question, mode) {
    var item = make("li", "question");
    item.setAttribute("data-id", String(question.id));
    var side = make("div", "q-side");
    if (mode === "qa") {
      var vote = make("button", "vote");
      vote.type = "button";
      vote.innerHTML = VOTE_ICON;
      vote.appendChild(make("span", "vote-count"));
      vote.addEventListener("click", function () { castVote(item, vote); });
      side.appendChild(vote);
    } else {
      side.appendChild(make("span", "vote-tally"));
    }
    item.appendChild(side);
    var body = make("div", "q-body");
    body.appendChild(make("p", "q-text"));
    var meta = make("p", "q-meta");
    meta.appendChild(make("span", "q-author"));
    meta.appendChild(make("time", "q-time"));
    meta.appendChild(make("span", "q-tags"));
    body.appendChild(meta);
    var answer = make("div", "q-answer");
    answer.appendChild(make("strong", "q-answer-label", T.answer_label));
    answer.appendChild(make("p", "q-answer-text"));
    body.appendChild(answer);
    if (mode === "mod") { body.appendChild(buildModeration(item)); }
    item.appendChild(body);
    return item;
  }

  function tag(className, text, icon) {
    var node = make("span", "tag " + className);
    if (icon) { node.innerHTML = icon; }
    node.appendChild(document.createTextNode(text));
    return node;
  }

  function updateItem(item, q, mode) {
    item.question = q;
    item.classList.toggle("is-pending", q.status === "pending");
    item.classList.toggle("is-pinned", q.pinned);
    item.classList.toggle("is-answered", q.answered);
    $(".q-text", item).textContent = q.text;
    $(".q-author", item).textContent = q.author || T.anonymous;
    var time = $(".q-time", item);
    time.dateTime = q.created_at;
    time.textContent = timeFormat.format(new Date(q.created_at));
    var tags = $(".q-tags", item);
    tags.textContent = "";
    if (q.status === "pending") { tags.appendChild(tag("tag-pending", T.awaiting)); }
    if (q.pinned && mode === "mod") { tags.appendChild(tag("tag-pinned", T.pinned, PIN_ICON)); }
    if (q.answered) { tags.appendChild(tag("tag-answered", "✓ " + T.answered)); }
    var answer = $(".q-answer", item);
    answer.hidden = !q.answer;
    $(".q-answer-text", answer).textContent = q.answer || "";
    var vote = $(".vote", item);
    if (vote) {
      vote.hidden = q.status !== "visible";
      vote.setAttribute("aria-pressed", q.voted ? "true" : "false");
      vote.setAttribute("aria-label", format(T.vote_label, { n: q.votes }));
      $(".vote-count", vote).textContent = String(q.votes);
      var closed = state.status === "ended" || state.status === "cancelled";
      if (closed) { vote.setAttribute("aria-disabled", "true"); } else { vote.removeAttribute("aria-disabled"); }
    }
    var tally = $(".vote-tally", item);
    if (tally) {
      tally.textContent = String(q.votes);
      tally.title = format(T.votes, { n: q.votes });
    }
    if (mode === "mod") { updateModeration(item, q); }
  }

  function castVote(item, button) {
    var q = item.question;
    if (button.getAttribute("aria-disabled") === "true") { return; }
    send({ type: "question.vote", id: q.id, up: !q.voted }, function (reply) {
      if (reply.type === "error") { roomMessage(errorText(reply)); }
    });
  }

  // Moderation ---------------------------------------------------------------

  function actionButton(label, className, action) {
    var button = make("button", "button button-small " + className, label);
    button.type = "button";
    button.setAttribute("data-action", action);
    return button;
  }

  function buildModeration(item) {
    var box = make("div", "q-mod");
    var actions = make("div", "q-actions");
    var approve = actionButton(T.approve, "button-primary", "approve");
    var reject = actionButton(T.reject, "button-cancel", "reject");
    var pin = actionButton(T.pin, "q-pin", "pin");
    var answer = actionButton(T.answer, "", "answer");
    answer.setAttribute("aria-expanded", "false");
    [approve, reject, pin, answer].forEach(function (b) { actions.appendChild(b); });
    box.appendChild(actions);

    var form = make("form", "answer-form");
    form.hidden = true;
    var fieldId = "answer-" + item.getAttribute("data-id") + "-" + Math.random().toString(36).slice(2, 7);
    var label = make("label", "small", T.answer_optional);
    label.htmlFor = fieldId;
    var field = make("textarea");
    field.id = fieldId;
    field.rows = 2;
    var formActions = make("div", "q-actions");
    var submit = make("button", "button button-small button-primary", T.mark_answered);
    submit.type = "submit";
    var cancel = make("button", "button button-small button-quiet", T.cancel);
    cancel.type = "button";
    formActions.appendChild(submit);
    formActions.appendChild(cancel);
    form.appendChild(label);
    form.appendChild(field);
    form.appendChild(formActions);
    box.appendChild(form);
    var message = make("p", "form-msg is-error");
    message.setAttribute("role", "alert");
    box.appendChild(message);

    function toggleAnswer(open) {
      form.hidden = !open;
      answer.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) { field.focus(); } else { answer.focus(); }
    }
    function moderate(action, extra) {
      message.textContent = "";
      var frame = { type: "question.moderate", id: item.question.id, action: action };
      if (extra) { frame.answer = extra; }
      send(frame, function (reply) {
        if (reply.type === "error") { message.textContent = errorText(reply); return; }
        if (action === "answer") { field.value = ""; form.hidden = true; answer.setAttribute("aria-expanded", "false"); }
      });
    }
    actions.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-action]");
      if (!button) { return; }
      var action = button.getAttribute("data-action");
      if (action === "answer") { toggleAnswer(form.hidden); return; }
      moderate(action);
    });
    cancel.addEventListener("click", function () { toggleAnswer(false); });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = field.value.trim();
      moderate("answer", text || null);
    });
    return box;
  }

  function updateModeration(item, q) {
    var pending = q.status === "pending";
    $("[data-action=approve]", item).hidden = !pending;
    $("[data-action=reject]", item).hidden = !pending;
    var pin = $(".q-pin", item);
    pin.hidden = pending;
    pin.textContent = q.pinned ? T.unpin : T.pin;
    pin.setAttribute("data-action", q.pinned ? "unpin" : "pin");
    $("[data-action=answer]", item).hidden = pending;
  }

  // Ask ----------------------------------------------------------------------

  var askForm = $("[data-ask-form]");
  if (askForm) {
    var askText = $("#ask-text");
    var askCount = $("[data-ask-count]");
    var askMessage = $("[data-ask-msg]");
    var askButton = $("button[type=submit]", askForm);
    var maxLength = config.maxLength;
    var length = function () { return Array.from(askText.value.trim()).length; };
    var updateCount = function () {
      var n = length();
      askCount.textContent = n + "/" + maxLength;
      askCount.classList.toggle("is-over", n > maxLength);
    };
    var showAsk = function (text, ok) {
      askMessage.textContent = text;
      askMessage.className = "form-msg " + (ok ? "is-ok" : "is-error");
    };
    askText.addEventListener("input", function () {
      updateCount();
      askMessage.textContent = "";
    });
    askText.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        askForm.requestSubmit();
      }
    });
    askForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (askForm.getAttribute("aria-busy") === "true") { return; }
      var text = askText.value.trim();
      if (!text) { showAsk(T.ask_empty, false); askText.focus(); return; }
      if (length() > maxLength) { showAsk(T.errors.too_long, false); askText.focus(); return; }
      askForm.setAttribute("aria-busy", "true");
      askButton.setAttribute("aria-disabled", "true");
      var anonymous = $("[data-ask-anonymous]").checked;
      send({ type: "question.ask", text: text, anonymous: anonymous }, function (reply) {
        askForm.removeAttribute("aria-busy");
        askButton.removeAttribute("aria-disabled");
        if (reply.type === "ack") {
          askText.value = "";
          updateCount();
          var waits = config.qaModerated && !moderates;
          showAsk(waits ? T.ask_sent_pending : T.ask_sent, true);
        } else {
          showAsk(errorText(reply), false);
        }
      });
    });
    updateCount();
  }

  // Sorting and tabs -----------------------------------------------------------

  $all("[data-sort]").forEach(function (button) {
    button.addEventListener("click", function () {
      state.sort = button.getAttribute("data-sort");
      $all("[data-sort]").forEach(function (b) { b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
      renderQuestions();
    });
  });

  var tabs = $all("[role=tab]");
  function selectTab(tab, focus) {
    tabs.forEach(function (t) {
      var selected = t === tab;
      t.setAttribute("aria-selected", selected ? "true" : "false");
      t.tabIndex = selected ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !selected;
    });
    if (focus) { tab.focus(); }
  }
  tabs.forEach(function (tab, index) {
    tab.addEventListener("click", function () { selectTab(tab, false); });
    tab.addEventListener("keydown", function (event) {
      var next = null;
      if (event.key === "ArrowRight") { next = tabs[(index + 1) % tabs.length]; }
      if (event.key === "ArrowLeft") { next = tabs[(index - 1 + tabs.length) % tabs.length]; }
      if (event.key === "Home") { next = tabs[0]; }
      if (event.key === "End") { next = tabs[tabs.length - 1]; }
      if (next) { event.preventDefault(); selectTab(next, true); }
    });
  });

  // Organiser controls ----------------------------------------------------------

  var controlMessage = $("[data-control-msg]");
  function setStatus(status, button) {
    controlMessage.textContent = "";
    button.setAttribute("aria-disabled", "true");
    send({ type: "session.status", status: status }, function (reply) {
      button.removeAttribute("aria-disabled");
      if (reply.type === "error") { controlMessage.textContent = errorText(reply); }
    });
  }
  var goLiveButton = $("[data-go-live]");
  if (goLiveButton) {
    goLiveButton.addEventListener("click", function () { setStatus("live", goLiveButton); });
  }
  var endButton = $("[data-end-session]");
  if (endButton) {
    endButton.addEventListener("click", function () {
      if (window.confirm(T.confirm_end)) { setStatus("ended", endButton); }
    });
  }

  // Viewers and connection ------------------------------------------------------

  // The session as the server has it now: a new stream address, title or
  // time (rescheduled in /manage/) replaces the page's.
  function applySession(session, announceIt) {
    if (session.stream && streamKey(session.stream) !== streamKey(state.stream)) {
      state.stream = session.stream;
      unmountStream();
      if (state.status === "live") { mountStream(); }
    }
    if (session.title) {
      var title = document.getElementById("live-h");
      if (title && title.textContent !== session.title) { title.textContent = session.title; }
    }
    if (session.starts_at) {
      var moved = new Date(session.starts_at).getTime();
      if (moved !== startsAt) {
        startsAt = moved;
        showTimes(new Date(session.starts_at), new Date(session.ends_at || session.starts_at));
        if (announceIt) { roomMessage(T.rescheduled); announce(T.rescheduled); }
        if (state.status === "scheduled") { stopCountdown(); startCountdown(); }
      }
    }
    if (session.status && session.status !== state.status) { showStatus(session.status, announceIt); }
  }

  // The session's time in the event's zone, as the server first rendered it.
  function showTimes(start, end) {
    var node = $(".session-time");
    if (!node) { return; }
    var zone = node.getAttribute("data-zone") || undefined;
    function fmt(date, options) {
      options.timeZone = zone;
      options.hour12 = false;
      try { return new Intl.DateTimeFormat(lang, options).format(date); } catch (e) { return date.toISOString(); }
    }
    node.setAttribute("datetime", start.toISOString());
    node.setAttribute("data-end", end.toISOString());
    var when = $(".when", node);
    if (when) {
      when.textContent = fmt(start, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }) +
        "–" + fmt(end, { hour: "2-digit", minute: "2-digit" });
    }
    var weekday = $(".weekday", node);
    if (weekday) { weekday.textContent = fmt(start, { weekday: "short" }); }
  }

  // A role changed elsewhere (an organiser edited it) arrives as a new hello.
  // Losing moderation takes the queue off the page at once; gaining it
  // needs the page's moderation panel, so the page is loaded again.
  function applyRole() {
    if (moderates && !renderedModerates) { window.location.reload(); return; }
    if (!moderates && renderedModerates) {
      renderedModerates = false;
      var qaTab = document.getElementById("tab-qa");
      if (qaTab) { selectTab(qaTab, false); }
      var tablist = $("[role=tablist]");
      if (tablist) { tablist.remove(); }
      var qaPanel = document.getElementById("panel-qa");
      if (qaPanel) { ["role", "aria-labelledby", "tabindex"].forEach(function (name) { qaPanel.removeAttribute(name); }); }
      var modPanel = document.getElementById("panel-mod");
      if (modPanel) { modPanel.remove(); }
      tabs = [];
      root.classList.remove("is-moderator");
    }
    var controls = $("[data-organiser-controls]");
    if (controls) { controls.hidden = !can(state.role, "status"); }
  }

  function renderViewers() {
    var box = $("[data-viewers]");
    if (!box || !state.viewers) { return; }
    box.hidden = false;
    var text = moderates
      ? format(T.watching_peak, { n: state.viewers.now, peak: state.viewers.peak })
      : format(T.watching, { n: state.viewers.now });
    $("[data-viewers-text]", box).textContent = text;
  }

  var connBox = $("[data-conn]");
  function setConnection(kind) {
    root.setAttribute("data-connection", kind);
    if (!connBox) { return; }
    connBox.hidden = kind === "open";
    connBox.className = "chip chip-conn chip-" + kind;
    if (kind !== "open") { connBox.textContent = T[kind] || ""; }
  }

  function roomMessage(text) {
    var box = $("[data-room-msg]");
    if (!box) { return; }
    box.textContent = text;
    window.clearTimeout(roomMessage.timer);
    roomMessage.timer = window.setTimeout(function () { box.textContent = ""; }, 8000);
  }

  // The websocket ------------------------------------------------------------------

  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var pingTimer = null;
  var refCounter = 0;
  var waiting = new Map();
  var greeted = false;

  function send(message, reply) {
    if (!socket || socket.readyState !== WebSocket.OPEN || !greeted) {
      if (reply) { reply({ type: "error", code: "offline" }); }
      return;
    }
    refCounter += 1;
    var ref = "c" + refCounter;
    message.ref = ref;
    if (reply) { waiting.set(ref, reply); }
    socket.send(JSON.stringify(message));
  }

  function connect() {
    retryTimer = null;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var current;
    try {
      current = new WebSocket(scheme + window.location.host + config.wsPath);
    } catch (e) {
      reconnectLater();
      return;
    }
    socket = current;
    var openedAt = 0;
    var lastFrameAt = 0;
    var lastPingAt = 0;
    current.onopen = function () {
      if (socket !== current) { return; }
      openedAt = lastFrameAt = lastPingAt = Date.now();
      pingTimer = window.setInterval(function () {
        // A socket can stay "open" long after the network went away (sleep,
        // a proxy dropping it): no hello soon after opening, or no frame
        // (pongs included) for two ping intervals, means start again.
        var now = Date.now();
        if ((!greeted && now - openedAt > HELLO_WITHIN) || now - lastFrameAt > 2 * PING_EVERY) {
          dropped(current, 1006);
          current.close();
          return;
        }
        if (now - lastPingAt >= PING_EVERY) {
          lastPingAt = now;
          send({ type: "ping" });
        }
      }, PING_EVERY / 5);
    };
    current.onmessage = function (event) {
      if (socket !== current) { return; }
      lastFrameAt = Date.now();
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      receive(message);
    };
    current.onclose = function (event) { dropped(current, event.code, event.reason); };
  }

  function dropped(closed, code, reason) {
    if (socket !== closed) { return; }
    socket = null;
    // Refused after a hello: let go by a change made elsewhere (Daphne
    // sends no close reason, so the order tells).
    var wasGreeted = greeted;
    greeted = false;
    window.clearInterval(pingTimer);
    // Nobody will answer what was in flight; let each sender say so.
    var lost = Array.from(waiting.values());
    waiting.clear();
    lost.forEach(function (reply) { reply({ type: "error", code: "offline" }); });
    var close = PROTOCOL.close;
    if (code === close.forbidden || code === close.notFound) {
      // Final: reconnecting would be refused the same way. A room that let
      // someone go (registration cancelled, role removed) says so.
      setConnection(code === close.notFound ? "gone" : reason === PROTOCOL.revoked || wasGreeted ? "revoked" : "forbidden");
      unmountStream();
      var askForm = $("[data-ask-form]");
      if (askForm) { askForm.hidden = true; }
      return;
    }
    if (code === close.restarting && attempt === 0) {
      // The server is stopping and sends its viewers away a few at a time:
      // back at once, to another process, with a little jitter (and with
      // the usual backoff if that keeps happening).
      reconnectLater(Math.random() * 250);
      return;
    }
    var retry = code === close.unavailable ? retryAfter(reason) : null;
    if (retry !== null) {
      // Not admitted just now: come back no sooner than asked, plus up to
      // half as long again, so the refused do not all return together;
      // never sooner than the backoff either.
      var wait = Math.max(retry * 1000 * (1 + Math.random() / 2), backoff());
      notBefore = Date.now() + wait;
      reconnectLater(wait);
      return;
    }
    reconnectLater();
  }

  function backoff() {
    return Math.min(BACKOFF_MAX, BACKOFF_FIRST * Math.pow(2, attempt)) * (0.5 + Math.random());
  }

  // "retry=<seconds>" in a 4503's reason: the wait the server asks for.
  function retryAfter(reason) {
    var match = /^retry=([0-9]+(?:\.[0-9]+)?)$/.exec(reason || "");
    return match ? Math.min(PROTOCOL.retryMax, parseFloat(match[1])) : null;
  }

  // Exponential backoff with ±50 % jitter, so a restarted server is not hit
  // by every viewer in the same instant; or the wait the server asked for.
  function reconnectLater(wait) {
    setConnection("reconnecting");
    if (retryTimer) { return; }
    var delay = wait !== undefined ? wait : backoff();
    attempt += 1;
    retryTimer = window.setTimeout(connect, delay);
  }

  var notBefore = 0;
  window.addEventListener("online", function () {
    // Back online: at once, unless the server asked for a later time.
    if (!socket && retryTimer && Date.now() >= notBefore) {
      window.clearTimeout(retryTimer);
      connect();
    }
  });

  function receive(message) {
    var reply = message.ref !== undefined && message.ref !== null ? waiting.get(message.ref) : undefined;
    switch (message.type) {
      case "hello":
        // Only a greeting proves the room works: a server that accepts and
        // then closes must not reset the backoff.
        attempt = 0;
        greeted = true;
        if (state.role !== null && message.you.role !== state.role) { announce(T.role_changed); }
        state.role = message.you.role;
        moderates = can(state.role, "moderate");
        applyRole();
        state.questions = new Map(message.questions.map(function (q) { return [q.id, q]; }));
        state.viewers = message.viewers;
        applySession(message.session, false);
        setConnection("open");
        showStatus(message.session.status, state.status !== message.session.status);
        renderViewers();
        break;
      case "question": {
        var q = message.question;
        var isNew = !state.questions.has(q.id);
        if (q.status === "rejected" && !moderates) {
          state.questions.delete(q.id);
        } else {
          state.questions.set(q.id, q);
        }
        renderQuestions();
        if (isNew && q.status === "visible") { announce(format(T.new_question, { text: q.text })); }
        if (isNew && q.status === "pending" && moderates) { announce(T.new_pending); }
        break;
      }
      case "question.removed":
        state.questions.delete(message.id);
        renderQuestions();
        break;
      case "viewers":
        state.viewers = { now: message.now, peak: message.peak };
        renderViewers();
        break;
      case "session.status":
        showStatus(message.status, true);
        break;
      case "session.changed":
        applySession(message.session, true);
        break;
      case "ack":
      case "error":
        if (reply) {
          waiting.delete(message.ref);
          reply(message);
        } else if (message.type === "error") {
          roomMessage(errorText(message));
        }
        break;
      default:
        break;
    }
  }

  showStatus(state.status, false);
  if (config.joined) {
    setConnection("connecting");
    connect();
  }
})();
