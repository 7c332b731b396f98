import vue from "@vitejs/plugin-vue";
import { defineConfig } from "vite";

// `npm run dev` serves the page with hot reload and sends /api to the app server
// (python examples/app_server.py badminton-web --port 5174), which mints the page's tokens.
export default defineConfig({
  plugins: [vue()],
  server: { proxy: { "/api": "http://127.0.0.1:5174" }, fs: { allow: [".."] } }, // ../shared: the page token
});
