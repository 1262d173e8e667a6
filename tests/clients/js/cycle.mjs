// Drives a tipline server with the published CyberTipline client `cybertipline-tools`,
// unchanged except for its base URL. Prints one JSON object with what the server answered.
// Usage: TIPLINE_BASE=http://127.0.0.1:PORT/ispws TIPLINE_USER=u TIPLINE_PASS=p node cycle.mjs IMAGE
import { readFileSync } from "node:fs";
import { Client, Environment, IncidentType } from "cybertipline-tools";

const client = new Client({
  environment: Environment.Testing,
  credentials: { username: process.env.TIPLINE_USER, password: process.env.TIPLINE_PASS },
});
client.baseUrl = process.env.TIPLINE_BASE; // the only change an integration makes

const out = {};
const status = await client.getStatus();
out.status = status.data.responseDescription;
out.requestId = status.requestId;

const report = await client.submitReport({
  incidentSummary: {
    // The client's own spelling ("...for Sexual Act"): tipline normalises it, and says so.
    incidentType: IncidentType.OnlineEnticement,
    escalateToHighPriority: "Adult is arranging to meet a child this weekend",
    reportAnnotations: { sextortion: true, minorToMinorInteraction: false },
    incidentDateTime: new Date("2026-10-01T12:00:00.000Z"),
  },
  incidentDetails: {
    webPageIncidents: [{ url: ["https://example.com/profile/123"], thirdPartyHostedContent: false }],
  },
  reporter: {
    reportingPerson: { firstName: "Rita", lastName: "Reporter", email: [{ email: "safety@example.com" }] },
  },
  personOrUserReported: {
    espIdentifier: "user-123",
    screenName: "synthetic_user",
    ipCaptureEvent: [{ ipAddress: "198.51.100.7", eventName: "Login", dateTime: new Date("2026-09-30T08:00:00Z") }],
  },
});
const reportId = report.data.reportId;
out.reportId = reportId;
out.reportIdType = typeof reportId;

const bytes = readFileSync(process.argv[2]);
const upload = await client.uploadFile({ id: reportId, file: new File([bytes], "standin.png", { type: "image/png" }) });
out.fileId = upload.data.fileId;
out.fileIdType = typeof upload.data.fileId;
out.hash = upload.data.hash;

await client.submitFileDetails({
  reportId: Number(reportId),
  fileId: upload.data.fileId,
  originalFileName: "standin.png",
  fileViewedByEsp: true,
  publiclyAvailable: false,
  fileAnnotations: { generativeAi: true },
  industryClassification: "B2",
});

const finish = await client.finishReport({ id: reportId });
out.finishCode = finish.data.responseCode;
out.finishFiles = finish.data.files;

// A second report, retracted; then retracting again must still parse (5101 is "desired state").
const second = await client.submitReport({
  incidentSummary: { incidentType: IncidentType.ChildPornography, incidentDateTime: new Date("2026-10-02T00:00:00Z") },
  reporter: { reportingPerson: { email: [{ email: "safety@example.com" }] } },
});
out.retracted = second.data.reportId;
out.retractCode = (await client.cancelReport({ id: second.data.reportId })).data.responseCode;
out.retractAgainCode = (await client.cancelReport({ id: second.data.reportId })).data.responseCode;

// Bad credentials: the client must see an authentication error, not a crash of its parser.
const bad = new Client({ environment: Environment.Testing, credentials: { username: "x", password: "y" } });
bad.baseUrl = process.env.TIPLINE_BASE;
try {
  await bad.getStatus();
  out.badAuth = "accepted?!";
} catch (e) {
  out.badAuth = String(e.message);
}
console.log(JSON.stringify(out));
