import { createApp } from "vue";
import App from "./App.vue";
import { connect } from "./gpurelay.js";

// The token (and the gateway's URL) first, from the app server; then the app.
connect().then((gpurelay) => createApp(App, { gpurelay }).mount("#app"));
